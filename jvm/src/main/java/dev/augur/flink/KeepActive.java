package dev.augur.flink;

import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.runtime.watermarkstatus.WatermarkStatus;

/**
 * Passes records and watermarks on unchanged, and does not pass on idleness: its output stays active while its input
 * is idle (the telemetry source marks itself idle when its partitions have been silent for the idle timeout).
 *
 * <p>Why: PyFlink's Python operators hold a watermark back until their current bundle is finished, but forward a
 * watermark status at once. When the status "idle" overtakes a held watermark, the held watermark is emitted into an
 * idle output, and Flink's outputs drop watermarks while idle: downstream event-time timers (the host stage's window
 * scoring, the no-data timers) then wait for the next watermark, which comes only with new data. With this operator
 * between every Flink SQL table and the Python operator that reads it (jobs.telemetry_windows.for_python), no Python
 * operator ever sees an idle input.
 *
 * <p>It is safe after the window stage because that stage reads the source through a keyed (all-to-all) exchange:
 * every window subtask sees the watermarks of every source subtask, so downstream operators, which take the minimum
 * over the window subtasks, need no idleness to make progress; when the whole source is idle they keep the last
 * watermark. The rejected and late records also pass through it straight from the source, but they lead only to the
 * dead-letter sink, where no watermark is needed.
 */
public final class KeepActive<T> extends AbstractStreamOperator<T> implements OneInputStreamOperator<T, T> {
    private static final long serialVersionUID = 1L;

    private transient boolean inputIdle;

    @Override
    public void processElement(StreamRecord<T> element) {
        output.collect(element);
    }

    @Override
    public void processWatermarkStatus(WatermarkStatus status) {
        if (status.isIdle() != inputIdle) {
            inputIdle = status.isIdle();
            LOG.info("{}: input {}; the output stays active", getOperatorName(), inputIdle ? "idle" : "active again");
        }
    }
}
