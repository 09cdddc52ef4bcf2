package main

// Example runs the quickstart as go run ./examples/quickstart does.
func Example() {
	main()
	// Unordered output:
	// -------------------------------------------
	// Batch: 0
	// -------------------------------------------
	// +-----------+-----+
	// |       word|count|
	// +-----------+-----+
	// |        GET|    2|
	// |       POST|    1|
	// |/index.html|    1|
	// |   /missing|    1|
	// |     /login|    1|
	// |        200|    2|
	// |        404|    1|
	// +-----------+-----+
}
