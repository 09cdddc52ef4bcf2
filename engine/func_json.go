package engine

// FromJSON is Spark's from_json(str, schema): the JSON object in str read
// into a struct, schema being a DDL string such as
// "level STRING, status INT, msg STRING". As Spark's PERMISSIVE mode, a
// member of the wrong type is null and a malformed document gives a struct
// of nulls. Reach its fields with GetField or Col("alias.field").
func FromJSON(c Column, schema string) Column {
	return call("from_json", "from_json("+c.name+")", c, Lit(schema))
}

// GetJSONObject is Spark's get_json_object(json, path): the value at the
// JSONPath path ($.a.b, $['a'], $.a[0], $.a[*]) as a string (JSON text for
// objects and arrays); null if nothing matches or the JSON is malformed.
func GetJSONObject(c Column, path string) Column {
	return call("get_json_object", "get_json_object("+c.name+", "+path+")", c, Lit(path))
}

// ToJSON is Spark's to_json: a struct (or an array) as a JSON string,
// leaving out null fields.
func ToJSON(c Column) Column { return call("to_json", "to_json("+c.name+")", c) }

// Struct is Spark's struct(cols...): a struct whose fields are the columns,
// named by their names (Spark's named_struct).
func Struct(cols ...Column) Column {
	args := make([]Column, 0, 2*len(cols))
	for _, c := range cols {
		args = append(args, Lit(c.name), c)
	}
	return call("named_struct", "struct("+names(cols)+")", args...)
}

// GetField is a struct's field, as Spark's Column.getField; Col("j.level")
// is the same for a struct column j.
func (c Column) GetField(name string) Column {
	return call("get_field", c.name+"."+name, c, Lit(name))
}
