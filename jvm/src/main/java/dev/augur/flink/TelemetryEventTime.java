package dev.augur.flink;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * TELEMETRY_EVENT_TIME(message BYTES, appended TIMESTAMP_LTZ, max_future_skew_ms): the top-level integer "ts" of a
 * raw message, read with a streaming parser that skips everything else (the source needs event time for watermarks
 * before the message is parsed in full). 0 when there is none, when it is negative, or when it lies more than
 * max_future_skew_ms after the broker appended the message: such a message must not move the watermark (it is
 * dead-lettered by PARSE_TELEMETRY, which applies the same rule). Deterministic, so the planner may evaluate it
 * twice (watermark and row) and get one answer.
 */
public class TelemetryEventTime extends ScalarFunction {
    private static final JsonFactory FACTORY = new JsonFactory();

    public long eval(byte[] message, java.time.Instant appended, Long maxFutureSkewMs) {
        Long ts = eventTime(message);
        if (ts == null || ts < 0 || ParseTelemetry.tooFarAhead(ts, appended, maxFutureSkewMs)) {
            return 0L;
        }
        return ts;
    }

    static Long eventTime(byte[] message) {
        if (message == null) {
            return null;
        }
        try (JsonParser p = FACTORY.createParser(message)) {
            if (p.nextToken() != JsonToken.START_OBJECT) {
                return null;
            }
            while (p.nextToken() == JsonToken.FIELD_NAME) {
                String name = p.currentName();
                JsonToken t = p.nextToken();
                if ("ts".equals(name)) {
                    if (t == JsonToken.VALUE_NUMBER_INT) {
                        return p.getLongValue();
                    }
                    if (t == JsonToken.VALUE_NUMBER_FLOAT) { // 1.7e12 is an integer to JSON Schema too
                        double d = p.getDoubleValue();
                        return Double.isFinite(d) && d == Math.rint(d) ? (Long) (long) d : null;
                    }
                    return null;
                }
                p.skipChildren();
            }
            return null;
        } catch (Exception e) {
            return null;
        }
    }
}
