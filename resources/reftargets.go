package resources

import (
	"slices"
	"strings"

	apb "github.com/google/fhir/go/proto/google/fhir/proto/annotations_go_proto"
	rpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// specTargets returns the types R4 lets the references at paths (elements of typ) point to,
// from the google/fhir protos' annotations (the ones the validator enforces): nil when any
// path may refer to any type, or is not a plain element path.
//
// A reference parameter with target types is indexed as Type/id only, and `p=id` is asked as
// `p=T/id` for each target (refQueryKeys): a stored reference always has one of those types,
// since the validator refuses others. Parameters declared with anyTarget get their lists here
// rather than by hand, so the lists are R4's.
func specTargets(typ string, paths []string) []string {
	var md protoreflect.MessageDescriptor
	oneofs := (&rpb.ContainedResource{}).ProtoReflect().Descriptor().Fields()
	for i := range oneofs.Len() {
		if m := oneofs.Get(i).Message(); m != nil && string(m.Name()) == typ {
			md = m
		}
	}
	if md == nil || len(paths) == 0 {
		return nil
	}
	var out []string
	for _, path := range paths {
		m := md
		var fd protoreflect.FieldDescriptor
		for seg := range strings.SplitSeq(path, ".") {
			if m == nil {
				return nil
			}
			if fd = m.Fields().ByJSONName(seg); fd == nil || fd.Message() == nil {
				return nil
			}
			m = fd.Message()
		}
		if m.Name() != "Reference" {
			return nil
		}
		refs, _ := proto.GetExtension(fd.Options(), apb.E_ValidReferenceType).([]string)
		if len(refs) == 0 || slices.Contains(refs, "Resource") {
			return nil
		}
		out = append(out, refs...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
