/* The per-tensor report table as HDF5 per-column datasets, shared by compressed model files
 * (/report/rows, report_store.h) and results files (/runs/<id>/layers, results.h). Internal to
 * libcce, not a public API.
 *
 * A table is a group holding one 1-D dataset per column, all of the same length (one element per
 * row): strategy, tensor, note (fixed-length UTF-8 strings, NUL-padded to the longest), layer
 * (int32), params_before, params_after, bytes_before, bytes_after, rank (int64), bits_per_weight,
 * sparsity, rel_fro_error, output_error, seconds (float64; NaN = unknown). */
#ifndef CCE_REPORT_TABLE_H
#define CCE_REPORT_TABLE_H

#include <hdf5.h>
#include <stddef.h>

#include "status.h"
#include "strategy.h"

/* Column writers: a 1-D dataset `name` of n elements in group g (n = 0 gives an empty dataset);
 * n strings as one fixed-length UTF-8 column. 0 on success, -1 on failure (the HDF5 error stack
 * holds the cause; callers report it with store_hdf5_fail). data and v are borrowed. */
int report_table_col(hid_t g, const char *name, hid_t file_type, hid_t mem_type, size_t n,
                     const void *data);
int report_table_strings(hid_t g, const char *name, size_t n, const char *const *v);

/* Writes the rows of r as a new table group `name` under parent. 0 on success, -1 on failure
 * (as above). r is borrowed. */
int report_table_write(hid_t parent, const char *name, const cce_report *r);

/* Reads the table group g (at gpath in file, both only for messages) into out, which it
 * initialises; on failure out is left empty. CCE_ERR_FORMAT naming the file and dataset when a
 * column is missing, not 1-D, of another length than the others or unreadable. The caller clears
 * out with cce_report_clear. */
cce_status report_table_read(hid_t g, const char *file, const char *gpath, cce_report *out);

/* The number of rows of table group g without reading them: every column must exist, be 1-D and
 * have the same length (CCE_ERR_FORMAT naming the file and dataset otherwise). */
cce_status report_table_count(hid_t g, const char *file, const char *gpath, size_t *n);

#endif
