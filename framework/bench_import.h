/* The speed of importing a Hugging Face checkpoint (`cce bench-import`).
 *
 * A synthetic model of a preset's shape (default stories110M) is exported once as F16 (or
 * another dtype) safetensors into a temporary folder. Then, each of `reps` times:
 *   import  cce_import_hf of that folder (mmap, upcast to float32 into a fresh model);
 *   save    cce_model_save of the result to the default store (contiguous, uncompressed,
 *           fsynced);
 * best of the runs for each. Input rate = safetensors bytes / import seconds; output rate =
 * float32 bytes / seconds (import alone, and import + save).
 *
 * References on the same machine and sizes, best of `reps`:
 *   memcpy fresh  memcpy of the float32 bytes into a newly allocated block (first touch of every
 *                 page, as the import's fresh model pays it);
 *   memcpy warm   the same into a block already touched;
 *   disk write    write() of the float32 bytes to a file in the temporary folder, then fsync (the
 *                 store's save cannot be faster). */
#ifndef CCE_BENCH_IMPORT_H
#define CCE_BENCH_IMPORT_H

#include <stdint.h>

#include "status.h"

typedef struct cce_bench_import_options {
    const char *preset; /* synth preset name (synth.h); NULL: "stories110M" */
    const char *dir;    /* parent of the temporary folder (created with mkdtemp there, removed
                         * afterwards); NULL: $TMPDIR or /tmp */
    int dtype;          /* a cce_st_dtype of the checkpoint: CCE_ST_F32, F16 (0 = F32) or BF16 */
    int reps;           /* >= 1 */
} cce_bench_import_options;

typedef struct cce_bench_import_result {
    int64_t params;         /* parameters of the model */
    double input_bytes;     /* safetensors bytes (all files of the folder) */
    double output_bytes;    /* float32 bytes of the model: params * 4 */
    double file_bytes;      /* size of the saved .h5 */
    double import_seconds;  /* best cce_import_hf */
    double save_seconds;    /* best cce_model_save */
    double total_seconds;   /* best import + save of one run */
    double input_gbs;       /* input_bytes / import_seconds / 1e9 */
    double output_gbs;      /* output_bytes / import_seconds / 1e9 */
    double total_gbs;       /* output_bytes / total_seconds / 1e9 */
    double memcpy_gbs;      /* fresh-destination memcpy of output_bytes */
    double memcpy_warm_gbs; /* warm memcpy of output_bytes */
    double disk_gbs;        /* write + fsync of output_bytes */
} cce_bench_import_result;

/* Runs the measurements above; *r is filled on success. CCE_ERR_RANGE for reps < 1, errors of
 * the synthesis, export, import and save otherwise (naming the file). The temporary folder is
 * removed in all cases. */
cce_status cce_bench_import(const cce_bench_import_options *o, cce_bench_import_result *r);

#endif
