package dev.augur.flink;

import java.util.Iterator;
import java.util.Map;
import java.util.TreeMap;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.ScalarFunction;
import org.apache.flink.types.Row;

/**
 * PARSE_TELEMETRY(message BYTES, max_bytes, appended TIMESTAMP_LTZ, max_future_skew_ms, schema_json): one raw
 * augur.telemetry.v1 message, parsed once and checked against the topic's JSON Schema (passed in by the job from
 * schemas/json), into the fields the window stage needs. A message that is oversized, not JSON, invalid,
 * non-finite, or stamped more than max_future_skew_ms after the broker appended it gets a non-null {@code reject}
 * ("reason: detail"; the job then asks the Python codec for the dead-letter reason and detail).
 *
 * <p>{@code attrs} is the attribute map as canonical JSON (keys sorted), so one series groups as one key whatever
 * order a producer wrote its attributes in.
 */
public class ParseTelemetry extends ScalarFunction {
    public static final String ROW_TYPE = "ROW<reject STRING, ts BIGINT, host STRING, metric STRING, mtype STRING, "
            + "attrs STRING, val DOUBLE, counts ARRAY<BIGINT>, hsum DOUBLE, capacity DOUBLE>";
    private static final ObjectMapper JSON = new ObjectMapper();

    private transient SchemaCheck schema;

    @DataTypeHint(ROW_TYPE)
    public Row eval(byte[] message, Integer maxBytes, java.time.Instant appended, Long maxFutureSkewMs,
                    String schemaJson) {
        if (message == null) {
            return reject("malformed: empty message");
        }
        if (maxBytes != null && message.length > maxBytes) {
            return reject("oversized");
        }
        JsonNode rec;
        try {
            rec = JSON.readTree(message);
        } catch (Exception e) {
            return reject("malformed: " + e.getMessage());
        }
        if (rec == null || !rec.isObject()) {
            return reject("schema_violation: not a JSON object");
        }
        String err = schemaFor(schemaJson).validate(rec);
        if (err != null) {
            return reject("schema_violation: " + err);
        }
        if (hasNonFinite(rec)) {
            return reject("non_finite: " + firstNonFinite(rec, "$"));
        }
        long ts = rec.get("ts").longValue();
        if (tooFarAhead(ts, appended, maxFutureSkewMs)) {
            return reject("clock_skew: event time is more than " + maxFutureSkewMs
                    + " ms after the broker appended the message");
        }
        String attrsJson;
        JsonNode attrNode = rec.get("attrs");
        if (attrNode.size() == 0) {
            attrsJson = "{}"; // most series have no attributes
        } else {
            TreeMap<String, String> attrs = new TreeMap<>();
            Iterator<Map.Entry<String, JsonNode>> it = attrNode.fields();
            while (it.hasNext()) {
                Map.Entry<String, JsonNode> e = it.next();
                attrs.put(e.getKey(), e.getValue().textValue());
            }
            try {
                attrsJson = JSON.writeValueAsString(attrs);
            } catch (Exception e) {
                return reject("malformed: " + e.getMessage());
            }
        }
        JsonNode value = rec.get("value");
        JsonNode hist = rec.get("hist");
        JsonNode capacity = rec.get("capacity");
        Long[] counts = null;
        Double hsum = null;
        if (hist != null) {
            JsonNode c = hist.get("counts");
            counts = new Long[c.size()];
            for (int i = 0; i < counts.length; i++) {
                counts[i] = c.get(i).longValue();
            }
            hsum = hist.get("sum").doubleValue();
        }
        return Row.of(null, ts, rec.get("host").textValue(), rec.get("metric").textValue(),
                rec.get("type").textValue(), attrsJson, value == null ? null : value.doubleValue(), counts, hsum,
                capacity == null ? null : capacity.doubleValue());
    }

    /** The schema is a literal of the job's SQL: compiled on the first call of this function instance. */
    private SchemaCheck schemaFor(String schemaJson) {
        if (schema == null) {
            try {
                schema = SchemaCheck.compile(JSON.readTree(schemaJson));
            } catch (Exception e) {
                throw new IllegalArgumentException("the telemetry schema cannot be compiled: " + e.getMessage(), e);
            }
        }
        return schema;
    }

    /** Whether any number in the message is not finite (a huge literal such as 1e400 parses as infinity); no
     *  allocation, as every message is checked. */
    private static boolean hasNonFinite(JsonNode node) {
        if (node.isFloatingPointNumber()) {
            return !Double.isFinite(node.doubleValue());
        }
        if (node.isContainerNode()) {
            for (JsonNode child : node) {
                if (hasNonFinite(child)) {
                    return true;
                }
            }
        }
        return false;
    }

    /** The JSON path of the first non-finite number (for the rejection's detail). */
    private static String firstNonFinite(JsonNode node, String path) {
        if (node.isFloatingPointNumber()) {
            double d = node.doubleValue();
            return Double.isFinite(d) ? null : path;
        }
        if (node.isObject()) {
            Iterator<Map.Entry<String, JsonNode>> it = node.fields();
            while (it.hasNext()) {
                Map.Entry<String, JsonNode> e = it.next();
                String found = firstNonFinite(e.getValue(), path + "." + e.getKey());
                if (found != null) {
                    return found;
                }
            }
        } else if (node.isArray()) {
            for (int i = 0; i < node.size(); i++) {
                String found = firstNonFinite(node.get(i), path + "[" + i + "]");
                if (found != null) {
                    return found;
                }
            }
        }
        return null;
    }

    private static Row reject(String why) {
        return Row.of(why.length() > 1024 ? why.substring(0, 1024) : why, null, null, null, null, null, null, null,
                null, null);
    }

    /** The clock-skew rule, measured against the broker's append time (one clock for every producer). */
    static boolean tooFarAhead(long ts, java.time.Instant appended, Long maxFutureSkewMs) {
        return appended != null && maxFutureSkewMs != null && ts - appended.toEpochMilli() > maxFutureSkewMs;
    }
}
