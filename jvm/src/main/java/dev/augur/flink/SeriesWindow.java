package dev.augur.flink;

import java.util.Arrays;
import java.util.Comparator;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.table.functions.AggregateFunction;
import org.apache.flink.types.Row;

/**
 * SERIES_WINDOW(ts, value, hist_counts, hist_sum, capacity, type): the samples of one series in one window,
 * collected on the JVM and handed to Python once per window: timestamps, values and histogram sums sorted by event
 * time (stable, so equal timestamps keep their arrival order), histograms merged bucket by bucket, and the capacity
 * of the latest sample. The features themselves are computed from these arrays by udfs/window_features.py, the
 * same code the reference and the backfill run, so the engines agree to the bit.
 */
// the accumulator is a RAW Java object: on the heap state backend it is updated in place, where a structured type
// would be converted from and to Flink's row format on every sample
@FunctionHint(output = @DataTypeHint(SeriesWindow.ROW_TYPE),
        accumulator = @DataTypeHint(value = "RAW", bridgedTo = SeriesWindow.Acc.class))
public class SeriesWindow extends AggregateFunction<Row, SeriesWindow.Acc> {
    public static final String ROW_TYPE = "ROW<mtype STRING, ts ARRAY<BIGINT>, vals ARRAY<DOUBLE>, "
            + "counts ARRAY<BIGINT>, hsums ARRAY<DOUBLE>, capacity DOUBLE>";

    /** The window's samples so far (plain arrays: a small, portable state). */
    public static class Acc {
        public int n;
        public long[] ts = new long[4];
        public double[] vals = new double[4];
        public double[] hsums = new double[4];
        public double[] caps = new double[4];
        public long[] counts = new long[0];
        public String mtype;
        public long mtypeTs = Long.MAX_VALUE;

        void add(long t, double v, double hs, double cap, String type) {
            if (n == ts.length) {
                int size = n * 2;
                ts = Arrays.copyOf(ts, size);
                vals = Arrays.copyOf(vals, size);
                hsums = Arrays.copyOf(hsums, size);
                caps = Arrays.copyOf(caps, size);
            }
            ts[n] = t;
            vals[n] = v;
            hsums[n] = hs;
            caps[n] = cap;
            n++;
            if (t < mtypeTs) {
                mtypeTs = t;
                mtype = type;
            }
        }

        void addCounts(long[] more) {
            if (more.length > counts.length) {
                counts = Arrays.copyOf(counts, more.length);
            }
            for (int i = 0; i < more.length; i++) {
                counts[i] += more[i];
            }
        }
    }

    @Override
    public Acc createAccumulator() {
        return new Acc();
    }

    public void accumulate(Acc acc, Long ts, Double value, Long[] histCounts, Double histSum, Double capacity,
                           String type) {
        acc.add(ts, value == null ? Double.NaN : value, histSum == null ? Double.NaN : histSum,
                capacity == null ? Double.NaN : capacity, type);
        if (histCounts != null) {
            long[] c = new long[histCounts.length];
            for (int i = 0; i < c.length; i++) {
                c[i] = histCounts[i] == null ? 0L : histCounts[i];
            }
            acc.addCounts(c);
        }
    }

    public void merge(Acc acc, Iterable<Acc> others) {
        for (Acc o : others) {
            for (int i = 0; i < o.n; i++) {
                acc.add(o.ts[i], o.vals[i], o.hsums[i], o.caps[i], o.mtype);
            }
            if (o.mtypeTs < acc.mtypeTs) {
                acc.mtypeTs = o.mtypeTs;
                acc.mtype = o.mtype;
            }
            acc.addCounts(o.counts);
        }
    }

    @Override
    public Row getValue(Acc acc) {
        Integer[] order = new Integer[acc.n];
        for (int i = 0; i < acc.n; i++) {
            order[i] = i;
        }
        Arrays.sort(order, Comparator.comparingLong(i -> acc.ts[i])); // a stable sort
        Long[] ts = new Long[acc.n];
        Double[] vals = new Double[acc.n];
        Double[] hsums = new Double[acc.n];
        for (int k = 0; k < acc.n; k++) {
            int i = order[k];
            ts[k] = acc.ts[i];
            vals[k] = acc.vals[i];
            hsums[k] = acc.hsums[i];
        }
        Long[] counts = new Long[acc.counts.length];
        for (int i = 0; i < counts.length; i++) {
            counts[i] = acc.counts[i];
        }
        double cap = acc.n == 0 ? Double.NaN : acc.caps[order[acc.n - 1]];
        return Row.of(acc.mtype, ts, vals, counts, hsums, Double.isNaN(cap) ? null : cap);
    }
}
