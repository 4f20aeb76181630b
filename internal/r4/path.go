package r4

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	apb "github.com/google/fhir/go/proto/google/fhir/proto/annotations_go_proto"
	rpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	anypb "google.golang.org/protobuf/types/known/anypb"
)

var (
	containedResourceDesc = (&rpb.ContainedResource{}).ProtoReflect().Descriptor()
	anyDesc               = (&anypb.Any{}).ProtoReflect().Descriptor()
)

// resourceField returns the ContainedResource oneof field for a resource type, accepting the
// FHIR type name ("MedicationRequest", as in JSON resourceType) or the proto JSON name
// ("medicationRequest", as in google/fhir validation paths).
func resourceField(name string) protoreflect.FieldDescriptor {
	fields := containedResourceDesc.Fields()
	if f := fields.ByJSONName(lowerFirst(name)); f != nil && f.Message() != nil &&
		(string(f.Message().Name()) == name || f.JSONName() == name) {
		return f
	}
	return nil
}

// isResourceType reports whether name is an R4 resource type that can stand on its own.
func isResourceType(name string) bool {
	return resourceField(name) != nil
}

func isChoice(d protoreflect.MessageDescriptor) bool {
	return d != nil && proto.HasExtension(d.Options(), apb.E_IsChoiceType)
}

func isReference(d protoreflect.MessageDescriptor) bool {
	return d != nil && proto.HasExtension(d.Options(), apb.E_FhirReferenceType)
}

// holdsResource reports whether the next path segment below a field of this message type is a
// resource type name inserted by google/fhir (Bundle.entry.resource, Resource.contained, ...).
func holdsResource(d protoreflect.MessageDescriptor) bool {
	return d.FullName() == containedResourceDesc.FullName() || d.FullName() == anyDesc.FullName()
}

// segment is one step of a google/fhir path: a name and an optional "[i]" index suffix.
type segment struct {
	name, index string
}

func splitPath(p string) []segment {
	if p == "" {
		return nil
	}
	parts := strings.Split(p, ".")
	segs := make([]segment, 0, len(parts))
	for _, part := range parts {
		s := segment{name: part}
		if i := strings.IndexByte(part, '['); i > 0 && strings.HasSuffix(part, "]") {
			s = segment{name: part[:i], index: part[i:]}
		}
		segs = append(segs, s)
	}
	return segs
}

// fhirPath turns a path reported by google/fhir into a FHIRPath expression that starts with the
// resource type. It understands both path styles the library produces:
//
//   - parse stage (JSON keys): "Patient._birthDate.extension[0]", "Observation.valueQuantity.value",
//     "Bundle.entry[0].resource.Observation.code";
//   - validation stage (proto JSON names): "Observation.value.quantity", "Bundle.entry[0].resource.observation".
//
// The result uses FHIR JSON element names: choice elements are joined ("valueQuantity"), resource
// type segments google/fhir inserts below Bundle.entry.resource and contained are dropped,
// "_element" becomes "element", and the typed reference fields google/fhir uses internally
// ("patientId", "uri") become "reference". Unrecognised tails are kept as reported.
func fhirPath(p string) string {
	segs := splitPath(p)
	out := make([]string, 0, len(segs))
	desc := containedResourceDesc
	for i := 0; i < len(segs); i++ {
		s := segs[i]
		if desc == nil {
			out = append(out, s.name+s.index)
			continue
		}
		if holdsResource(desc) {
			if f := resourceField(s.name); f != nil {
				if len(out) == 0 {
					out = append(out, string(f.Message().Name()))
				}
				desc = f.Message()
				continue
			}
			if len(out) == 0 {
				out = append(out, s.name+s.index)
				desc = nil
				continue
			}
		}
		name := lowerFirst(strings.TrimPrefix(s.name, "_"))
		f := desc.Fields().ByJSONName(name)
		if f == nil {
			// Parse-stage choice element such as "valueQuantity".
			if cf, sub := choiceByJSONKey(desc, name); cf != nil {
				out = append(out, name+s.index)
				desc = sub
				continue
			}
			out = append(out, name+s.index)
			desc = nil
			continue
		}
		if isReference(desc) && f.ContainingOneof() != nil {
			// google/fhir splits Reference.reference into typed fields; they are one element in FHIR.
			out = append(out, "reference")
			break
		}
		if isChoice(f.Message()) && i+1 < len(segs) {
			// Validation-stage choice: "value" followed by "quantity".
			next := segs[i+1]
			i++
			out = append(out, name+upperFirst(next.name)+next.index)
			if sf := f.Message().Fields().ByJSONName(next.name); sf != nil {
				desc = sf.Message()
			} else {
				desc = nil
			}
			continue
		}
		out = append(out, name+s.index)
		desc = f.Message()
	}
	return strings.Join(out, ".")
}

// choiceByJSONKey finds the choice field of d that a JSON key like "valueQuantity" belongs to,
// returning the choice field and the message type of the chosen alternative.
func choiceByJSONKey(d protoreflect.MessageDescriptor, key string) (protoreflect.FieldDescriptor, protoreflect.MessageDescriptor) {
	fields := d.Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		if !isChoice(f.Message()) || !strings.HasPrefix(key, f.JSONName()) {
			continue
		}
		if sf := f.Message().Fields().ByJSONName(lowerFirst(strings.TrimPrefix(key, f.JSONName()))); sf != nil {
			return f, sf.Message()
		}
	}
	return nil, nil
}

// childPath appends an element name taken from user input (an unknown key) to a FHIRPath,
// quoting it as a FHIRPath delimited identifier when it is not a plain identifier.
func childPath(parent, name string) string {
	if !isIdentifier(name) {
		name = "`" + strings.NewReplacer("\\", "\\\\", "`", "\\`").Replace(clip(name, 64)) + "`"
	}
	if parent == "" {
		return name
	}
	return parent + "." + name
}

func isIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if r == '_' || r < utf8.RuneSelf && unicode.IsLetter(r) || i > 0 && r < utf8.RuneSelf && unicode.IsDigit(r) {
			continue
		}
		return false
	}
	return true
}

func lowerFirst(s string) string {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return s
	}
	return string(s[0]+'a'-'A') + s[1:]
}

func upperFirst(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

// snakeToLowerCamel converts a proto field name such as "multiple_birth" to "multipleBirth".
func snakeToLowerCamel(s string) string {
	parts := strings.Split(s, "_")
	for i := 1; i < len(parts); i++ {
		parts[i] = upperFirst(parts[i])
	}
	return strings.Join(parts, "")
}

// clip shortens s to at most n bytes (on a rune boundary) and makes it valid UTF-8.
func clip(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
