package r4

import (
	"reflect"
)

// google/fhir reports problems as *jsonpbhelper.UnmarshalError and jsonpbhelper.UnmarshalErrorList,
// but jsonpbhelper is an internal package of github.com/google/fhir/go/jsonformat, so this package
// cannot name those types. It reads their exported fields by reflection instead; the package path
// check keeps unrelated error types with the same names out.
const jsonpbhelperPkg = "github.com/google/fhir/go/jsonformat/internal/jsonpbhelper"

// umError mirrors the fields of jsonpbhelper.UnmarshalError this package uses.
type umError struct {
	Path        string // google/fhir path of the element, or of its parent for unknown elements
	Details     string // fixed message chosen by google/fhir, free of resource content
	Diagnostics string // may quote the offending value or key
	Type        string // "RequiredFieldError", "ReferenceTypeError" or empty
}

// unmarshalErrors returns the UnmarshalErrors err carries: one for an *UnmarshalError, all of
// them for an UnmarshalErrorList. ok is false when err is neither.
func unmarshalErrors(err error) (list []*umError, ok bool) {
	if err == nil {
		return nil, false
	}
	v := reflect.ValueOf(err)
	t := v.Type()
	switch {
	case t.Kind() == reflect.Pointer && isHelperType(t.Elem(), "UnmarshalError"):
		e := fromStruct(v)
		if e == nil {
			return nil, false
		}
		return []*umError{e}, true
	case t.Kind() == reflect.Slice && isHelperType(t, "UnmarshalErrorList"):
		list = make([]*umError, 0, v.Len())
		for i := 0; i < v.Len(); i++ {
			if e := fromStruct(v.Index(i)); e != nil {
				list = append(list, e)
			}
		}
		return list, true
	}
	return nil, false
}

func isHelperType(t reflect.Type, name string) bool {
	return t.PkgPath() == jsonpbhelperPkg && t.Name() == name
}

// fromStruct copies the fields of a *jsonpbhelper.UnmarshalError value; nil when v is a nil
// pointer or lacks the expected fields.
func fromStruct(v reflect.Value) *umError {
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return nil
	}
	s := v.Elem()
	str := func(name string) string {
		f := s.FieldByName(name)
		if !f.IsValid() || f.Kind() != reflect.String {
			return ""
		}
		return f.String()
	}
	return &umError{
		Path:        str("Path"),
		Details:     str("Details"),
		Diagnostics: str("Diagnostics"),
		Type:        str("Type"),
	}
}
