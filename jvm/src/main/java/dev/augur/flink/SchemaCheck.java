package dev.augur.flink;

import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.node.TextNode;

/**
 * A validator for the subset of JSON Schema (draft-07) that Augur's message schemas use, so the stream can check
 * every raw sample on the JVM against the same files in schemas/json that the Python codec uses. A keyword it does
 * not know makes {@link #compile} fail: it never passes a message by ignoring a rule. tests/test_jvm_functions.py
 * checks that it agrees with the Python validator on valid and invalid messages.
 *
 * <p>Every message of the stream goes through it: a passing value builds no string (messages are made when the
 * schema is compiled) and allocates little. Not thread-safe (patterns reuse one matcher): one per function instance.
 */
final class SchemaCheck {
    private static final Set<String> ANNOTATIONS =
            Set.of("$schema", "$id", "$comment", "title", "description", "definitions", "default", "examples");

    private interface Rule {
        /** null when {@code value} passes, else what is wrong; the JSON path is prefixed on the way back, so a
         *  passing message costs no string building. */
        String check(JsonNode value);
    }

    private static String at(String step, String err) {
        return err == null ? null : step + (err.startsWith(".") || err.startsWith("[") ? err : " " + err);
    }

    private final Rule root;

    private SchemaCheck(Rule root) {
        this.root = root;
    }

    static SchemaCheck compile(JsonNode schema) {
        return new SchemaCheck(compileNode(schema));
    }

    /** null when the value is valid, else the first problem found. */
    String validate(JsonNode value) {
        String err = root.check(value);
        return at("$", err);
    }

    private static Rule compileNode(JsonNode schema) {
        if (schema.isBoolean()) {
            boolean ok = schema.booleanValue();
            return v -> ok ? null : "is not allowed";
        }
        if (!schema.isObject()) {
            throw new IllegalArgumentException("a schema must be an object or a boolean, got " + schema);
        }
        List<Rule> rules = new ArrayList<>();
        Iterator<Map.Entry<String, JsonNode>> fields = schema.fields();
        while (fields.hasNext()) {
            Map.Entry<String, JsonNode> e = fields.next();
            String key = e.getKey();
            JsonNode arg = e.getValue();
            if (ANNOTATIONS.contains(key) || key.equals("then") || key.equals("else")
                    || key.equals("additionalProperties") && schema.has("properties")) {
                continue; // then/else belong to "if"; additionalProperties next to properties belongs to it
            }
            rules.add(keyword(key, arg, schema));
        }
        return allOf(rules);
    }

    /** The first failure of {@code rules}, in order. */
    private static Rule allOf(List<Rule> rules) {
        Rule[] all = rules.toArray(new Rule[0]);
        return v -> {
            for (Rule r : all) {
                String err = r.check(v);
                if (err != null) {
                    return err;
                }
            }
            return null;
        };
    }

    private static Rule keyword(String key, JsonNode arg, JsonNode schema) {
        switch (key) {
            case "type": {
                List<String> types = new ArrayList<>();
                if (arg.isArray()) {
                    arg.forEach(t -> types.add(t.asText()));
                } else {
                    types.add(arg.asText());
                }
                String[] names = types.toArray(new String[0]);
                return v -> {
                    for (String t : names) {
                        if (hasType(v, t)) {
                            return null;
                        }
                    }
                    return "must be of type " + String.join(" or ", types);
                };
            }
            case "const": {
                String msg = "must be " + arg;
                return v -> sameValue(v, arg) ? null : msg;
            }
            case "enum": {
                String msg = "must be one of " + arg;
                return v -> {
                    for (JsonNode option : arg) {
                        if (sameValue(v, option)) {
                            return null;
                        }
                    }
                    return msg;
                };
            }
            case "minimum":
                return v -> !v.isNumber() || v.doubleValue() >= arg.doubleValue() ? null
                        : "must be >= " + arg;
            case "maximum":
                return v -> !v.isNumber() || v.doubleValue() <= arg.doubleValue() ? null
                        : "must be <= " + arg;
            case "exclusiveMinimum":
                return v -> !v.isNumber() || v.doubleValue() > arg.doubleValue() ? null
                        : "must be > " + arg;
            case "exclusiveMaximum":
                return v -> !v.isNumber() || v.doubleValue() < arg.doubleValue() ? null
                        : "must be < " + arg;
            case "minLength":
                return v -> !v.isTextual() || codePoints(v) >= arg.intValue() ? null
                        : "must be at least " + arg + " characters";
            case "maxLength":
                return v -> !v.isTextual() || codePoints(v) <= arg.intValue() ? null
                        : "must be at most " + arg + " characters";
            case "pattern": {
                // one matcher, reset per value: a SchemaCheck belongs to one function instance (one thread)
                java.util.regex.Matcher re = ecmaPattern(arg.asText()).matcher("");
                String msg = "must match " + arg.asText();
                return v -> !v.isTextual() || re.reset(v.textValue()).find() ? null : msg;
            }
            case "required":
                return v -> {
                    if (!v.isObject()) {
                        return null;
                    }
                    for (JsonNode name : arg) {
                        if (!v.has(name.asText())) {
                            return "must contain " + name.asText();
                        }
                    }
                    return null;
                };
            case "maxProperties":
                return v -> !v.isObject() || v.size() <= arg.intValue() ? null
                        : "must have at most " + arg + " properties";
            case "minProperties":
                return v -> !v.isObject() || v.size() >= arg.intValue() ? null
                        : "must have at least " + arg + " properties";
            case "properties":
            case "additionalProperties":
                return properties(schema);
            case "propertyNames": {
                Rule names = compileNode(arg);
                return v -> {
                    if (!v.isObject()) {
                        return null;
                    }
                    Iterator<String> it = v.fieldNames();
                    while (it.hasNext()) {
                        String name = it.next();
                        String err = names.check(TextNode.valueOf(name));
                        if (err != null) {
                            return "property name " + name + " " + err;
                        }
                    }
                    return null;
                };
            }
            case "items": {
                if (!arg.isObject() && !arg.isBoolean()) {
                    throw new IllegalArgumentException("tuple 'items' is not supported");
                }
                Rule item = compileNode(arg);
                return v -> {
                    if (!v.isArray()) {
                        return null;
                    }
                    for (int i = 0; i < v.size(); i++) {
                        String err = item.check(v.get(i));
                        if (err != null) {
                            return at("[" + i + "]", err);
                        }
                    }
                    return null;
                };
            }
            case "minItems":
                return v -> !v.isArray() || v.size() >= arg.intValue() ? null
                        : "must have at least " + arg + " items";
            case "maxItems":
                return v -> !v.isArray() || v.size() <= arg.intValue() ? null
                        : "must have at most " + arg + " items";
            case "allOf": {
                List<Rule> all = new ArrayList<>();
                arg.forEach(s -> all.add(compileNode(s)));
                return allOf(all);
            }
            case "anyOf": {
                List<Rule> any = new ArrayList<>();
                arg.forEach(s -> any.add(compileNode(s)));
                return v -> any.stream().anyMatch(r -> r.check(v) == null) ? null
                        : "must match one of the alternatives";
            }
            case "not": {
                Rule inner = compileNode(arg);
                return v -> inner.check(v) != null ? null : "must not match " + arg;
            }
            case "if": {
                Rule cond = compileNode(arg);
                Rule then = schema.has("then") ? compileNode(schema.get("then")) : null;
                Rule otherwise = schema.has("else") ? compileNode(schema.get("else")) : null;
                return v -> {
                    Rule chosen = cond.check(v) == null ? then : otherwise;
                    return chosen == null ? null : chosen.check(v);
                };
            }
            default:
                throw new IllegalArgumentException("unsupported JSON Schema keyword '" + key + "'");
        }
    }

    private static Rule properties(JsonNode schema) {
        java.util.Map<String, Rule> named = new java.util.HashMap<>();
        if (schema.has("properties")) {
            Iterator<Map.Entry<String, JsonNode>> it = schema.get("properties").fields();
            while (it.hasNext()) {
                Map.Entry<String, JsonNode> e = it.next();
                named.put(e.getKey(), compileNode(e.getValue()));
            }
        }
        Rule extra = schema.has("additionalProperties") ? compileNode(schema.get("additionalProperties")) : null;
        String[] names = named.keySet().stream().sorted().toArray(String[]::new);
        Rule[] rules = java.util.Arrays.stream(names).map(named::get).toArray(Rule[]::new);
        return v -> {
            if (!v.isObject()) {
                return null;
            }
            if (extra == null && names.length < v.size()) {
                // only the named properties have rules: look them up rather than walk every field (an "if"
                // testing one property of a large object)
                for (int i = 0; i < names.length; i++) {
                    JsonNode value = v.get(names[i]);
                    String err = value == null ? null : rules[i].check(value);
                    if (err != null) {
                        return at("." + names[i], err);
                    }
                }
                return null;
            }
            Iterator<Map.Entry<String, JsonNode>> it = v.fields();
            while (it.hasNext()) {
                Map.Entry<String, JsonNode> e = it.next();
                Rule r = named.get(e.getKey());
                if (r == null) {
                    r = extra;
                }
                if (r != null) {
                    String err = r.check(e.getValue());
                    if (err != null) {
                        return at("." + e.getKey(), err);
                    }
                }
            }
            return null;
        };
    }

    /** JSON Schema patterns are ECMA-262 regexes, where "$" is the end of the input; in Java it also matches
     *  before a final line break ("a\n" would pass "^a$"), so an unescaped "$" outside a class becomes "\z". */
    static Pattern ecmaPattern(String pattern) {
        StringBuilder out = new StringBuilder();
        boolean inClass = false;
        for (int i = 0; i < pattern.length(); i++) {
            char c = pattern.charAt(i);
            if (c == '\\' && i + 1 < pattern.length()) {
                out.append(c).append(pattern.charAt(++i));
                continue;
            }
            if (c == '[') {
                inClass = true;
            } else if (c == ']') {
                inClass = false;
            }
            out.append(c == '$' && !inClass ? "\\z" : String.valueOf(c));
        }
        return Pattern.compile(out.toString());
    }

    private static int codePoints(JsonNode v) {
        String s = v.textValue();
        return s.codePointCount(0, s.length());
    }

    private static boolean hasType(JsonNode v, String type) {
        switch (type) {
            case "object": return v.isObject();
            case "array": return v.isArray();
            case "string": return v.isTextual();
            case "integer": return isInteger(v);
            case "number": return v.isNumber();
            case "boolean": return v.isBoolean();
            case "null": return v.isNull();
            default: throw new IllegalArgumentException("unknown JSON Schema type '" + type + "'");
        }
    }

    /** JSON Schema's integer: any number without a fractional part (1.0 is one, as in the Python validator). */
    static boolean isInteger(JsonNode v) {
        if (v.isIntegralNumber()) {
            return true;
        }
        if (!v.isFloatingPointNumber()) {
            return false;
        }
        double d = v.doubleValue();
        return Double.isFinite(d) && d == Math.rint(d);
    }

    private static boolean sameValue(JsonNode a, JsonNode b) {
        if (a.isNumber() && b.isNumber()) {
            if (a.isIntegralNumber() && b.isIntegralNumber() && a.canConvertToLong() && b.canConvertToLong()) {
                return a.longValue() == b.longValue(); // "v": 1, without a BigDecimal per message
            }
            return a.decimalValue().compareTo(b.decimalValue()) == 0;
        }
        return a.equals(b);
    }
}
