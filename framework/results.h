/* The results store (DESIGN 8): one HDF5 file of experiment runs, written so that a crash at any
 * moment (SIGINT, SIGKILL, power loss) loses at most the run in progress and never leaves a torn
 * file.
 *
 * Layout (format "cce-results", version 1):
 *   /            attributes format = "cce-results", version = 1, created (ISO 8601 UTC)
 *   /runs/<id>   one group per run; id = "r000001", "r000002", ... in the order runs were added.
 *                Attributes (fixed-length UTF-8 strings unless noted):
 *                  key             the run key: the canonical text of everything that defines the
 *                                  run; two runs with equal keys are the same run (resume)
 *                  experiment      the experiment's name
 *                  strategy        "magnitude", "wanda+rtn" (steps in order), "dense" for none
 *                  params          JSON text: the steps' parameters
 *                  plan            JSON text: the plan rules given and the applied plan rows
 *                  seed            uint64: the run's own seed (from experiment seed and key)
 *                  protocol        the evaluation protocol line (eval.h)
 *                  model, model_sha256, dataset, dataset_sha256
 *                  cce_version, timestamp (ISO 8601 UTC), seconds (float64: wall time of the run)
 *   /runs/<id>/metrics   group whose float64 attributes are the metrics, one per name (ppl,
 *                        ppl_stderr, nll, top1, kl, ...); NaN allowed
 *   /runs/<id>/layers    the per-tensor report table, per-column datasets as /report/rows in
 *                        report_store.h (strategy, tensor, note, layer, params_before, ...)
 *   /runs/<id>/<name>    extra tables of the run (results_table.h): typed columns, e.g. "weights"
 *                        (wstats.h) and "activations" (astats.h); groups marked by the attribute
 *                        table_version. Files without them read as before.
 *
 * Durability. libhdf5 1.10 has no journal, so the file is never modified in place: adding a run
 * copies the current file to a temporary name beside it, appends the run there, fsyncs it,
 * renames it over the file and fsyncs the folder. A reader therefore always sees either the file
 * before the run or the file after it. The cost is one copy of the file per run (results files
 * hold metrics and tables, not weights, so they stay small).
 *
 * Temporary files are "<path>.tmp.<pid>.<n>", created with O_EXCL. A writer killed before its
 * rename leaves its temporary file behind; the next cce_results_open removes such orphans (those
 * whose pid is no longer running) while it holds the lock.
 *
 * Locking. A writer holds an exclusive flock on "<path>.lock" from cce_results_open to
 * cce_results_close; a second writer gets CCE_ERR_STATE naming the file ("locked by another
 * writer"), at once rather than waiting. The lock file is opened anew by every cce_results_open,
 * so a second open in the same process conflicts as another process would; it stays in place
 * after close. Readers take no lock (the file they open is always whole).
 */
#ifndef CCE_RESULTS_H
#define CCE_RESULTS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "results_table.h"
#include "status.h"
#include "strategy.h"

/* One run to record. Every pointer is borrowed for the duration of the call; NULL strings are
 * stored as "". */
typedef struct cce_run_record {
    const char *key;        /* required, non-empty */
    const char *experiment; /* required */
    const char *strategy;
    const char *params_json;
    const char *plan_json;
    uint64_t seed;
    const char *protocol;
    const char *model, *model_sha256;
    const char *dataset, *dataset_sha256;
    double seconds;
    size_t n_metrics;
    const char *const *metric_names; /* [n_metrics], [A-Za-z0-9_]+, distinct */
    const double *metric_values;     /* [n_metrics] */
    const cce_report *layers;        /* per-tensor rows, or NULL for none */
    size_t n_tables;
    const cce_table *const *tables; /* [n_tables] extra tables (results_table.h), written as
                                       /runs/<id>/<name>; names distinct, not "metrics" or
                                       "layers"; NULL when n_tables is 0 */
} cce_run_record;

/* A results file open for writing (holds the lock). */
typedef struct cce_results cce_results;

/* Opens path for adding runs, creating the missing folders above it and an empty results file
 * (through a temporary name) if none exists, and takes the lock. An existing file is read whole
 * (the run index), so CCE_ERR_FORMAT when it is not a readable cce-results file (it is left
 * untouched); CCE_ERR_STATE if another writer holds the lock. The caller owns *out
 * (cce_results_close). */
cce_status cce_results_open(const char *path, cce_results **out);

/* Releases the lock and frees r. NULL is allowed. */
void cce_results_close(cce_results *r);

/* 1 if a run with this key is recorded (resume), else 0; *id (may be NULL) gets its id, which
 * stays valid until the next cce_results_add or cce_results_close. */
int cce_results_has(const cce_results *r, const char *key, const char **id);

/* Appends one run durably (see above): when it returns CCE_OK the run is on disk. *id (may be
 * NULL) gets the new run's id (valid as in cce_results_has); ids are never reused. A key already
 * recorded is replaced (the old run is dropped in the same atomic step, for --redo; the new run
 * gets a new id). CCE_ERR_ARG names a missing key or experiment, a bad or repeated metric name;
 * on any failure the file is unchanged and no temporary file remains. (One exception: if only
 * the final fsync of the folder fails, CCE_ERR_IO is returned with the run already in the file
 * and in the index, *id set; a power loss may then still undo it.) */
cce_status cce_results_add(cce_results *r, const cce_run_record *rec, const char **id);

/* ---- Reading (no lock needed) ---- */

/* A run as read back: the attributes as strings (numbers formatted with %.17g, seed as decimal)
 * and the metrics. All owned by the cce_results_runs that holds it. */
typedef struct cce_run_info {
    char id[16];
    size_t n_attrs;
    char **attr_names, **attr_values; /* [n_attrs] */
    size_t n_metrics;
    char **metric_names;   /* [n_metrics] */
    double *metric_values; /* [n_metrics] */
    size_t n_layer_rows;   /* rows of /runs/<id>/layers */
    size_t n_tables;       /* extra tables of the run (results_table.h), in name order */
    char **table_names;    /* [n_tables] */
    size_t *table_rows;    /* [n_tables] their row counts */
} cce_run_info;

typedef struct cce_results_runs {
    size_t n;
    cce_run_info *runs; /* [n] in id order */
} cce_results_runs;

/* Reads every run's attributes (in the order written) and metrics (in the order given). Every
 * attribute listed above must be present and the layers table consistent (all columns, one
 * length). CCE_ERR_IO for a missing file, CCE_ERR_FORMAT naming the file (and run) when it is not
 * a readable cce-results file (corrupt, truncated, another format or version, an incomplete run).
 * The caller clears *out with cce_results_runs_free (also safe after a failure). */
cce_status cce_results_read(const char *path, cce_results_runs *out);
void cce_results_runs_free(cce_results_runs *runs);

/* The value of attribute name of a run, or NULL. Borrowed. */
const char *cce_run_attr(const cce_run_info *run, const char *name);

/* Reads /runs/<id>/layers into out (initialised here; cce_report_clear). CCE_ERR_NOT_FOUND for
 * an id the file does not hold, CCE_ERR_ARG for a malformed id. */
cce_status cce_results_read_layers(const char *path, const char *id, cce_report *out);

/* Reads the extra table `name` of run id (results_table.h) into a new table; the caller owns *out
 * (cce_table_free). CCE_ERR_NOT_FOUND when the file has no run id or the run no such table,
 * CCE_ERR_ARG for a malformed id or name, CCE_ERR_FORMAT naming the file and dataset for a
 * corrupt table. */
cce_status cce_results_read_table(const char *path, const char *id, const char *name,
                                  cce_table **out);

/* Export formats of cce_results_export. */
typedef enum cce_results_format {
    CCE_RESULTS_TSV,
    CCE_RESULTS_CSV,
    CCE_RESULTS_JSON
} cce_results_format;

/* Writes the runs table (one row per run: id, the attributes, the metrics; the union of metric
 * names over runs as columns, empty where a run lacks one; a metric named like an attribute gets
 * the column "metric_<name>") to out. TSV and CSV begin with a commented header ("# " lines: the
 * file, its sha256, the cce version, the column meanings) and a row of column names. Doubles are
 * written with the fewest digits that read back exactly, NaN as "nan". TSV escapes tab, newline,
 * carriage return and backslash inside a field as \t \n \r \\; CSV quotes as RFC 4180.
 * JSON is an object {"source": {file, sha256, cce_version, table, ..., columns}, "runs": [...]}
 * with the metrics of a run as an object, params and plan parsed, the seed as a decimal string
 * and NaN as null. table "runs" (or NULL) or "layers" (then one row per run and tensor, with the
 * run id first; JSON {"source": ..., "layers": [...]}), or the name of an extra table (one row
 * per run and table row, the run id first, then the table's columns in order: the union over the
 * runs that hold it, empty where a run lacks one; a vector column `v` of width w becomes the
 * columns v_0 .. v_{w-1} in TSV and CSV and an array in JSON {"source": ..., "<name>": [...]}).
 * CCE_ERR_NOT_FOUND when no run holds a table of that name. The file is read once, as one
 * version even while a writer adds runs. */
cce_status cce_results_export(const char *path, const char *table, cce_results_format format,
                              FILE *out);

#endif
