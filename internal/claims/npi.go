package claims

// ValidNPI reports whether s is a 10-digit NPI whose last digit is the Luhn check digit
// computed over the card-issuer prefix 80840 followed by its first nine digits (CMS, NPI
// check digit).
func ValidNPI(s string) bool {
	if len(s) != 10 {
		return false
	}
	for i := 0; i < 10; i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	digits := "80840" + s[:9]
	sum := 0
	// Double every second digit from the right of the payload (the check digit's left
	// neighbour first).
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if (len(digits)-1-i)%2 == 0 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	check := (10 - sum%10) % 10
	return int(s[9]-'0') == check
}
