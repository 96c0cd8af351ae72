/* Pieces of the results store shared by results.c (writer), results_read.c (reader) and
 * results_export.c (tables). Internal to libcce, not a public API. */
#ifndef CCE_RESULTS_INTERNAL_H
#define CCE_RESULTS_INTERNAL_H

#include <hdf5.h>

#include "results.h"

#define RESULTS_FORMAT  "cce-results"
#define RESULTS_VERSION 1

/* The run attributes cce_results_add writes, in the order it writes them. Every one must be
 * present in a run for it to read as complete. */
extern const char *const results_run_attrs[];
extern const size_t results_n_run_attrs;

/* Opens path read-only and checks that it is a cce-results file of a version this build reads.
 * CCE_ERR_IO when the file is missing or unreadable, CCE_ERR_FORMAT naming the file when it is
 * not an HDF5 file, is corrupt, lacks the format attribute or has another format or version. The
 * caller closes *out with H5Fclose. */
cce_status results_open_file(const char *path, hid_t *out);

/* Reads every run of the open file f (path names it in messages) into out, as cce_results_read. */
cce_status results_read_file(hid_t f, const char *path, cce_results_runs *out);

/* Reads /runs/<id>/layers of the open file f into out, as cce_results_read_layers. */
cce_status results_read_layers_file(hid_t f, const char *path, const char *id, cce_report *out);

/* Writes table t as the group /runs/<id>/<t->name> under the open run group run (runpath names it
 * in messages). (results_table_store.c) */
cce_status results_table_write(hid_t run, const char *file, const char *runpath,
                               const cce_table *t);

/* 1 if the child `name` of the run group run is a table group (attribute table_version); *rows
 * (may be NULL) gets its row count (-1 if unreadable). Never sets an error. */
int results_table_probe(hid_t run, const char *name, int64_t *rows);

/* Reads table `name` of run id of the open file f, as cce_results_read_table. */
cce_status results_read_table_file(hid_t f, const char *path, const char *id, const char *name,
                                   cce_table **out);

/* 1 if id is a run id ("r" and 1 to 9 digits), else 0. */
int results_is_run_id(const char *id);

/* Names of HDF5 links, collected by H5Literate with results_collect_name as the callback (set
 * failed on out of memory); free the names with results_name_list_free. (results_read.c) */
typedef struct results_name_list {
    size_t n, cap;
    char **names; /* [n], owned */
    int failed;   /* out of memory */
} results_name_list;

herr_t results_collect_name(hid_t g, const char *name, const H5L_info_t *info, void *data);
void results_name_list_free(results_name_list *l);

#endif
