package reconcilers

// CheckOwnershipOf is checkOwnership with a list of fields of the test's
// choosing: a schema with a field more than State's.
var CheckOwnershipOf = checkOwnership
