package profiles

import (
	"strings"

	apb "github.com/google/fhir/go/proto/google/fhir/proto/annotations_go_proto"
	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	rpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The snapshot of each profile is generated, not written by hand: the base R4 elements come from
// the google/fhir R4 protos, whose annotations record each element's cardinality
// (validation_requirement, repeated), type, reference targets and choice types as the R4
// StructureDefinitions state them; the profile's differential is then laid over them.

const r4Base = "http://hl7.org/fhir/StructureDefinition/"

// resourceDescriptor finds the R4 message for a resource type.
func resourceDescriptor(typ string) protoreflect.MessageDescriptor {
	if typ == "Extension" {
		return (&dtpb.Extension{}).ProtoReflect().Descriptor()
	}
	fields := (&rpb.ContainedResource{}).ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		if m := fields.Get(i).Message(); m != nil && string(m.Name()) == typ {
			return m
		}
	}
	return nil
}

// baseElements lists the ElementDefinitions of the base R4 resource typ, in definition order:
// the root, then every element and backbone element below it. Data types are not expanded (as in
// the R4 snapshots themselves).
func baseElements(typ string) []map[string]any {
	md := resourceDescriptor(typ)
	if md == nil {
		return nil
	}
	out := []map[string]any{{
		"id": typ, "path": typ, "min": 0, "max": "*",
		"base": map[string]any{"path": typ, "min": 0, "max": "*"},
	}}
	walkElements(md, typ, map[protoreflect.FullName]string{md.FullName(): typ}, &out)
	return out
}

func walkElements(md protoreflect.MessageDescriptor, path string, seen map[protoreflect.FullName]string, out *[]map[string]any) {
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		name := fd.JSONName()
		min := 0
		if proto.GetExtension(fd.Options(), apb.E_ValidationRequirement) == apb.Requirement_REQUIRED_BY_FHIR {
			min = 1
		}
		max := "1"
		if fd.Cardinality() == protoreflect.Repeated {
			max = "*"
		}
		el := map[string]any{"min": min, "max": max}
		fm := fd.Message()
		switch {
		case fm == nil:
			// Only google/fhir's own bookkeeping fields are scalars; R4 has none.
			continue
		case proto.GetExtension(fm.Options(), apb.E_IsChoiceType).(bool):
			name += "[x]"
			var types []any
			cf := fm.Fields()
			for j := range cf.Len() {
				types = append(types, typeOf(cf.Get(j)))
			}
			el["type"] = types
		case isBackbone(md, fm):
			if p, ok := seen[fm.FullName()]; ok {
				el["contentReference"] = "#" + p
				break
			}
			el["type"] = []any{map[string]any{"code": "BackboneElement"}}
		default:
			el["type"] = []any{typeOf(fd)}
		}
		p := path + "." + name
		el["id"], el["path"] = p, p
		el["base"] = map[string]any{"path": p, "min": min, "max": max}
		*out = append(*out, el)
		if fm != nil && isBackbone(md, fm) && el["contentReference"] == nil {
			seen[fm.FullName()] = p
			walkElements(fm, p, seen, out)
			delete(seen, fm.FullName())
		}
	}
}

// isBackbone reports whether fm is a backbone element nested in the resource (not a code
// wrapper or choice type, which are nested too).
func isBackbone(parent, fm protoreflect.MessageDescriptor) bool {
	if !strings.HasPrefix(string(fm.FullName()), string(resourceRoot(parent).FullName())+".") {
		return false
	}
	if proto.GetExtension(fm.Options(), apb.E_IsChoiceType).(bool) {
		return false
	}
	return proto.GetExtension(fm.Options(), apb.E_StructureDefinitionKind) != apb.StructureDefinitionKindValue_KIND_PRIMITIVE_TYPE
}

// resourceRoot is the top-level message enclosing md.
func resourceRoot(md protoreflect.MessageDescriptor) protoreflect.MessageDescriptor {
	for {
		p, ok := md.Parent().(protoreflect.MessageDescriptor)
		if !ok {
			return md
		}
		md = p
	}
}

// facts gives the base min, max and type of a path below a data type (Patient.identifier.type),
// for snapshot elements the resource's own elements do not cover.
func facts(typ, id string) (map[string]any, bool) {
	var segs []seg
	for _, part := range strings.Split(strings.TrimPrefix(id, typ+"."), ".") {
		name, slice, _ := strings.Cut(part, ":")
		segs = append(segs, seg{name: name, slice: slice})
	}
	fd := fieldAt(typ, segs)
	if fd == nil || fd.Message() == nil {
		return nil, false
	}
	min := 0
	if proto.GetExtension(fd.Options(), apb.E_ValidationRequirement) == apb.Requirement_REQUIRED_BY_FHIR {
		min = 1
	}
	max := "1"
	if fd.Cardinality() == protoreflect.Repeated {
		max = "*"
	}
	el := map[string]any{"min": min, "max": max}
	if proto.GetExtension(fd.Message().Options(), apb.E_IsChoiceType).(bool) {
		var types []any
		cf := fd.Message().Fields()
		for j := range cf.Len() {
			types = append(types, typeOf(cf.Get(j)))
		}
		el["type"] = types
	} else {
		el["type"] = []any{typeOf(fd)}
	}
	// The base is the data type's element: Identifier.type for Patient.identifier.type.
	parent := fd.ContainingMessage()
	el["base"] = map[string]any{"path": string(parent.Name()) + "." + segs[len(segs)-1].name, "min": min, "max": max}
	return el, true
}

// typeOf gives the ElementDefinition.type of a field.
func typeOf(fd protoreflect.FieldDescriptor) map[string]any {
	fm := fd.Message()
	name := string(fm.Name())
	switch {
	case fm.FullName() == "google.protobuf.Any":
		return map[string]any{"code": "Resource"}
	case proto.GetExtension(fm.Options(), apb.E_StructureDefinitionKind) == apb.StructureDefinitionKindValue_KIND_PRIMITIVE_TYPE:
		if _, nested := fm.Parent().(protoreflect.MessageDescriptor); nested || strings.HasSuffix(name, "Code") && name != "Code" {
			return map[string]any{"code": "code"}
		}
		return map[string]any{"code": strings.ToLower(name[:1]) + name[1:]}
	case name == "Reference":
		t := map[string]any{"code": "Reference"}
		if refs := proto.GetExtension(fd.Options(), apb.E_ValidReferenceType).([]string); len(refs) > 0 {
			var tp []any
			for _, r := range refs {
				tp = append(tp, r4Base+r)
			}
			t["targetProfile"] = tp
		}
		return t
	}
	return map[string]any{"code": name}
}
