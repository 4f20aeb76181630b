package resources

import (
	"math"
	"strconv"
	"strings"
)

// Location near (https://hl7.org/fhir/R4/location.html#positional):
// near=latitude|longitude|distance|units finds Locations whose position lies within distance
// of the point. Positions are indexed as two numbers (NearLatitude, NearLongitude), and the
// search is the bounding box of the circle: a latitude range and a longitude range, each an
// index range on both stores. The box's corners reach up to √2 × distance from the point, so
// a few Locations just outside the circle may be returned; none inside it is missed.

// DefaultNearKm is the distance used when near gives none (the spec leaves it to the server).
const DefaultNearKm = 10.0

const earthRadiusKm = 6371.0088

// nearUnits converts the units near accepts (UCUM codes and plain names) to kilometres.
var nearUnits = map[string]float64{
	"": 1, "km": 1, "m": 0.001, "mi": 1.609344, "[mi_i]": 1.609344, "[mi_us]": 1.609347,
}

func parseNear(name string, values []string) ([]Clause, error) {
	if len(values) != 1 || strings.Contains(values[0], ",") {
		return nil, Errorf(KindBadRequest, "%s takes one location: latitude|longitude|distance|units", name)
	}
	parts := strings.Split(values[0], "|")
	if len(parts) < 2 || len(parts) > 4 {
		return nil, Errorf(KindBadRequest, "%s takes latitude|longitude|distance|units", name)
	}
	num := func(s string) (float64, bool) {
		f, err := strconv.ParseFloat(s, 64)
		return f, err == nil && !math.IsNaN(f) && !math.IsInf(f, 0)
	}
	lat, ok1 := num(parts[0])
	long, ok2 := num(parts[1])
	if !ok1 || !ok2 || lat < -90 || lat > 90 || long < -180 || long > 180 {
		return nil, Errorf(KindBadRequest, "%s: latitude must be within ±90 and longitude within ±180", name)
	}
	km := DefaultNearKm
	if len(parts) >= 3 && parts[2] != "" {
		d, ok := num(parts[2])
		if !ok || d < 0 {
			return nil, Errorf(KindBadRequest, "%s: the distance must be a non-negative number", name)
		}
		unit := ""
		if len(parts) == 4 {
			unit = parts[3]
		}
		factor, ok := nearUnits[unit]
		if !ok {
			return nil, Errorf(KindBadRequest, "%s: unit %q is not one of km, m, mi, [mi_i], [mi_us]", name, unit)
		}
		km = d * factor
	}
	return nearBox(lat, long, km), nil
}

// nearBox is the bounding box of the circle of radius km around (lat, long), as clauses.
func nearBox(lat, long, km float64) []Clause {
	between := func(param string, ranges ...[2]float64) Clause {
		m := ValueMatch{Param: param}
		for _, r := range ranges {
			m.Any = append(m.Any, []Bound{{Op: OpGE, Num: r[0]}, {Op: OpLE, Num: r[1]}})
		}
		return Clause{Numbers: []ValueMatch{m}}
	}
	dLat := km / earthRadiusKm * 180 / math.Pi
	lo, hi := lat-dLat, lat+dLat
	clauses := []Clause{between(NearLatitude, [2]float64{lo, hi})}
	if lo <= -90 || hi >= 90 {
		return clauses // the circle holds a pole: every longitude
	}
	// The widest longitude span is at the box's edge nearest a pole.
	maxLat := math.Max(math.Abs(lo), math.Abs(hi)) * math.Pi / 180
	dLong := km / (earthRadiusKm * math.Cos(maxLat)) * 180 / math.Pi
	if dLong >= 180 {
		return clauses
	}
	west, east := long-dLong, long+dLong
	switch {
	case west < -180: // the box crosses the antimeridian: two ranges
		clauses = append(clauses, between(NearLongitude, [2]float64{west + 360, 180}, [2]float64{-180, east}))
	case east > 180:
		clauses = append(clauses, between(NearLongitude, [2]float64{west, 180}, [2]float64{-180, east - 360}))
	default:
		clauses = append(clauses, between(NearLongitude, [2]float64{west, east}))
	}
	return clauses
}

// DistanceKm is the great-circle (haversine) distance between two points.
func DistanceKm(lat1, long1, lat2, long2 float64) float64 {
	rad := math.Pi / 180
	dLat, dLong := (lat2-lat1)*rad, (long2-long1)*rad
	a := math.Sin(dLat/2)*math.Sin(dLat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dLong/2)*math.Sin(dLong/2)
	return 2 * earthRadiusKm * math.Asin(math.Min(1, math.Sqrt(a)))
}
