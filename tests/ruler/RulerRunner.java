import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import software.amazon.event.ruler.JsonRuleCompiler;
import software.amazon.event.ruler.Machine;
import software.amazon.event.ruler.MachineComplexityEvaluator;
import software.amazon.event.ruler.MatchType;
import software.amazon.event.ruler.Patterns;

/**
 * Judges (pattern, events) batches with event-ruler, one JSON object per line in and out, in one JVM.
 *
 * In:  {"pattern": "<pattern JSON text>", "events": ["<event JSON text>", ...]}
 * Out: {"valid": true, "complexity": N, "matches": [true, false, ...]}
 *      {"valid": false, "error": "..."}
 *
 * A pattern is valid when the compiler Machine uses takes it and, if it has wildcards, its machine's complexity is
 * within COMPLEXITY_LIMIT: event-ruler leaves the limit to its caller (its README shows the check), so the limit is
 * the one the Python matcher documents. Matching uses Machine.rulesForJSONEvent, the array-consistent matcher.
 */
public final class RulerRunner {
    private static final ObjectMapper JSON = new ObjectMapper();

    private RulerRunner() {}

    public static void main(String[] args) throws Exception {
        int limit = args.length > 0 ? Integer.parseInt(args[0]) : 10;
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        PrintStream out = new PrintStream(System.out, false, "UTF-8");
        String line;
        while ((line = in.readLine()) != null) {
            if (line.isEmpty()) {
                continue;
            }
            out.println(JSON.writeValueAsString(judge(JSON.readTree(line), limit)));
            out.flush();
        }
    }

    private static ObjectNode judge(JsonNode request, int limit) {
        ObjectNode answer = JSON.createObjectNode();
        String pattern = request.get("pattern").asText();
        List<Map<String, List<Patterns>>> rules;
        try {
            rules = JsonRuleCompiler.compile(pattern);
        } catch (Exception | StackOverflowError e) {
            return invalid(answer, String.valueOf(e.getMessage()));
        }
        Machine machine = Machine.builder().build();
        try {
            machine.addRule("rule", pattern);
        } catch (Exception e) {
            return invalid(answer, "addRule: " + e.getMessage());
        }
        int complexity = 0;
        if (hasWildcard(rules)) {
            complexity = machine.evaluateComplexity(new MachineComplexityEvaluator(limit + 1));
            if (complexity > limit) {
                answer.put("complexity", complexity);
                return invalid(answer, "Rule is too complex");
            }
        }
        answer.put("valid", true);
        answer.put("complexity", complexity);
        ArrayNode matches = answer.putArray("matches");
        for (JsonNode event : request.path("events")) {
            try {
                matches.add(machine.rulesForJSONEvent(event.asText()).contains("rule"));
            } catch (Exception e) {
                matches.add(JSON.getNodeFactory().textNode("error: " + e.getMessage()));
            }
        }
        return answer;
    }

    private static boolean hasWildcard(List<Map<String, List<Patterns>>> rules) {
        for (Map<String, List<Patterns>> rule : rules) {
            for (List<Patterns> patterns : rule.values()) {
                for (Patterns p : patterns) {
                    if (p.type() == MatchType.WILDCARD || p.type() == MatchType.ANYTHING_BUT_WILDCARD) {
                        return true;
                    }
                }
            }
        }
        return false;
    }

    private static ObjectNode invalid(ObjectNode answer, String error) {
        answer.put("valid", false);
        answer.put("error", error);
        return answer;
    }
}
