// SparkDecode decodes byte strings as Spark 3.5 does for
// split(CAST(value AS STRING), pattern): UTF8String.toString is
// new String(bytes, UTF_8), whose decoder replaces malformed input with
// U+FFFD, and split is Java's String.split with limit -1; each word goes
// back to UTF-8 as UTF8String.fromString does.
//
// Arguments: the patterns (Java regexes) to split with. Input, on stdin: one
// byte string a line, in hex. Output, on stdout, a line per input line: the
// decoded string re-encoded, then for each pattern a tab and the words
// separated by commas, each in hex.
//
// Run: java operators/testdata/SparkDecode.java ' ' '\s+' < in > out
import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.nio.charset.StandardCharsets;
import java.util.HexFormat;

public class SparkDecode {
    public static void main(String[] args) throws Exception {
        HexFormat hex = HexFormat.of();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.US_ASCII));
        BufferedWriter out = new BufferedWriter(new OutputStreamWriter(System.out, StandardCharsets.US_ASCII));
        for (String line; (line = in.readLine()) != null; ) {
            String s = new String(hex.parseHex(line), StandardCharsets.UTF_8);
            out.write(hex.formatHex(s.getBytes(StandardCharsets.UTF_8)));
            for (String pattern : args) {
                out.write('\t');
                String[] words = s.split(pattern, -1);
                for (int i = 0; i < words.length; i++) {
                    if (i > 0) {
                        out.write(',');
                    }
                    out.write(hex.formatHex(words[i].getBytes(StandardCharsets.UTF_8)));
                }
            }
            out.write('\n');
        }
        out.flush();
    }
}
