/* The results store (results.h): bit-exact round trips of attributes, metrics and layer rows;
 * never writing in place; resume by key and replacement; the writer lock (same process and
 * another process); durability under SIGKILL at random moments; bad and corrupt input; orphaned
 * temporary files. The exports are tested in test_results_export.c. */
#include "test_support.h"

#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "results.h"
#include "results_fixture.h"
#include "store.h"

/* ---- Round trip ------------------------------------------------------------------------------ */

static void test_roundtrip(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("results_roundtrip");
    const char *path = test_path(dir, "sub/folder/results.h5"); /* folders are created */
    cce_results *r;
    assert_cce_ok(cce_results_open(path, &r));
    assert_true(test_file_exists(path));

    enum { N = 4 };
    record recs[N];
    char *big = NULL;
    for (int i = 0; i < N; i++) {
        char key[64];
        snprintf(key, sizeof key, "strategy=magnitude ratio=0.%d", i);
        record_init(&recs[i], key, (unsigned)i, (size_t)(3 * i));
    }
    /* optional strings absent, no layers table, no metrics */
    recs[2].rec.strategy = recs[2].rec.params_json = recs[2].rec.protocol = NULL;
    recs[2].rec.model = recs[2].rec.dataset_sha256 = NULL;
    recs[2].rec.layers = NULL;
    recs[2].rec.n_metrics = 0;
    /* a plan of 300 kB (beyond the 64 kB an attribute can hold in an object header) */
    big = malloc(300001);
    for (int i = 0; i < 300000; i++) big[i] = (char)('a' + i % 26);
    big[300000] = '\0';
    recs[3].rec.plan_json = big;
    for (int i = 0; i < N; i++) {
        const char *id;
        assert_cce_ok(cce_results_add(r, &recs[i].rec, &id));
        char want[16];
        snprintf(want, sizeof want, "r%06d", i + 1);
        assert_string_equal(id, want);
    }
    cce_results_close(r);

    cce_results_runs runs;
    assert_cce_ok(cce_results_read(path, &runs));
    assert_int_equal(runs.n, N);
    for (int i = 0; i < N; i++) {
        char want[16];
        snprintf(want, sizeof want, "r%06d", i + 1);
        assert_string_equal(runs.runs[i].id, want);
        assert_run_equals(&runs.runs[i], &recs[i]);
        /* the attributes in the order written */
        assert_string_equal(runs.runs[i].attr_names[0], "key");
        assert_string_equal(runs.runs[i].attr_names[runs.runs[i].n_attrs - 1], "seconds");
        cce_report rows;
        assert_cce_ok(cce_results_read_layers(path, runs.runs[i].id, &rows));
        if (recs[i].rec.layers)
            assert_same_rows(&rows, &recs[i].layers);
        else
            assert_int_equal(rows.n, 0);
        cce_report_clear(&rows);
    }
    assert_null(cce_run_attr(&runs.runs[0], "no_such_attribute"));
    cce_results_runs_free(&runs);
    assert_int_equal(runs.n, 0);

    /* Reopening continues the ids and knows the keys. */
    assert_cce_ok(cce_results_open(path, &r));
    const char *id;
    assert_true(cce_results_has(r, recs[1].key, &id));
    assert_string_equal(id, "r000002");
    record more;
    record_init(&more, "another", 9, 2);
    assert_cce_ok(cce_results_add(r, &more.rec, &id));
    assert_string_equal(id, "r000005");
    cce_results_close(r);
    record_free(&more);
    for (int i = 0; i < N; i++) record_free(&recs[i]);
    free(big);
    assert_int_equal(count_prefixed(test_path(dir, "sub/folder"), "results.h5.tmp."), 0);
}

/* Adding a run never modifies the file in place: a reader that opened the file before keeps
 * reading the old bytes, and the name points to a new file. A failure after the temporary copy
 * was made removes the copy and leaves the file as it was. */
static void test_never_in_place(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("results_in_place");
    char path[4096];
    snprintf(path, sizeof path, "%s", test_path(dir, "results.h5"));
    write_runs(path, 2);
    size_t len0;
    char *before = test_read_file(path, &len0);
    struct stat st0, st1;
    assert_int_equal(stat(path, &st0), 0);
    FILE *old = fopen(path, "rb");
    assert_non_null(old);
    cce_results *r;
    assert_cce_ok(cce_results_open(path, &r));
    record rec;
    record_init(&rec, "new", 7, 3);
    assert_cce_ok(cce_results_add(r, &rec.rec, NULL));
    assert_int_equal(stat(path, &st1), 0);
    assert_true(st0.st_ino != st1.st_ino);
    char *again = malloc(len0 + 1);
    assert_int_equal(fread(again, 1, len0 + 1, old), len0);
    assert_memory_equal(before, again, len0);
    fclose(old);

    /* Someone else overwrites the file with garbage while the writer holds it: the copy cannot be
     * opened, the add fails, the garbage stays as it was and no temporary file remains. */
    test_write_file(path, "garbage", 7);
    assert_int_equal(cce_results_add(r, &rec.rec, NULL), CCE_ERR_HDF5);
    assert_non_null(strstr(cce_error_detail(), path));
    size_t len;
    char *now = test_read_file(path, &len);
    assert_int_equal(len, 7);
    assert_memory_equal(now, "garbage", 7);
    assert_int_equal(count_prefixed(dir, "results.h5.tmp."), 0);
    /* and a removed file: nothing is created */
    unlink(path);
    assert_int_equal(cce_results_add(r, &rec.rec, NULL), CCE_ERR_IO);
    assert_false(test_file_exists(path));
    assert_int_equal(count_prefixed(dir, "results.h5.tmp."), 0);
    cce_results_close(r);
    record_free(&rec);
    free(before);
    free(again);
    free(now);
}

/* ---- Resume and replacement ------------------------------------------------------------------ */

static void test_has_and_replace(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("results_replace");
    char path[4096];
    snprintf(path, sizeof path, "%s", test_path(dir, "results.h5"));
    cce_results *r;
    assert_cce_ok(cce_results_open(path, &r));
    const char *id = "x";
    assert_false(cce_results_has(r, "A", &id));
    assert_null(id);
    assert_false(cce_results_has(r, "A", NULL));
    record a, b, a2;
    record_init(&a, "A", 1, 2);
    record_init(&b, "B", 2, 3);
    record_init(&a2, "A", 3, 1);
    assert_cce_ok(cce_results_add(r, &a.rec, NULL));
    assert_cce_ok(cce_results_add(r, &b.rec, NULL));
    assert_true(cce_results_has(r, "A", &id));
    assert_string_equal(id, "r000001");
    assert_true(cce_results_has(r, "B", &id));
    assert_string_equal(id, "r000002");
    assert_false(cce_results_has(r, "a", NULL)); /* keys are compared exactly */
    cce_results_close(r);

    /* Resume: a new writer finds the recorded keys. */
    assert_cce_ok(cce_results_open(path, &r));
    assert_true(cce_results_has(r, "A", &id));
    assert_string_equal(id, "r000001");
    /* Replace (redo): one run with key A remains, with the new values and a new id. */
    assert_cce_ok(cce_results_add(r, &a2.rec, &id));
    assert_string_equal(id, "r000003");
    assert_true(cce_results_has(r, "A", &id));
    assert_string_equal(id, "r000003");
    cce_results_close(r);

    cce_results_runs runs;
    assert_cce_ok(cce_results_read(path, &runs));
    assert_int_equal(runs.n, 2);
    assert_string_equal(runs.runs[0].id, "r000002");
    assert_run_equals(&runs.runs[0], &b);
    assert_string_equal(runs.runs[1].id, "r000003");
    assert_run_equals(&runs.runs[1], &a2);
    cce_results_runs_free(&runs);
    cce_report rows;
    assert_int_equal(cce_results_read_layers(path, "r000001", &rows), CCE_ERR_NOT_FOUND);
    assert_cce_ok(cce_results_read_layers(path, "r000003", &rows));
    assert_same_rows(&rows, &a2.layers);
    cce_report_clear(&rows);

    /* Ids are not reused after the last run was replaced. */
    assert_cce_ok(cce_results_open(path, &r));
    assert_cce_ok(cce_results_add(r, &a.rec, &id));
    assert_string_equal(id, "r000004");
    cce_results_close(r);
    record_free(&a);
    record_free(&b);
    record_free(&a2);
}

/* ---- Lock ------------------------------------------------------------------------------------ */

static void expect_locked(const char *path) {
    cce_results *r2 = NULL;
    assert_int_equal(cce_results_open(path, &r2), CCE_ERR_STATE);
    assert_null(r2);
    const char *detail = cce_error_detail();
    if (!strstr(detail, path) || !strstr(detail, "another writer"))
        fail_msg("lock error does not name the file and the other writer: %s", detail);
}

static void test_lock_same_process(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("results_lock");
    char path[4096];
    snprintf(path, sizeof path, "%s", test_path(dir, "results.h5"));
    cce_results *r;
    assert_cce_ok(cce_results_open(path, &r));
    record a;
    record_init(&a, "A", 1, 1);
    assert_cce_ok(cce_results_add(r, &a.rec, NULL));
    expect_locked(path);
    expect_locked(path); /* a failed attempt does not disturb the holder */
    /* readers take no lock */
    cce_results_runs runs;
    assert_cce_ok(cce_results_read(path, &runs));
    assert_int_equal(runs.n, 1);
    cce_results_runs_free(&runs);
    record b;
    record_init(&b, "B", 2, 1);
    assert_cce_ok(cce_results_add(r, &b.rec, NULL)); /* the holder still writes */
    cce_results_close(r);
    cce_results *r2;
    assert_cce_ok(cce_results_open(path, &r2));
    assert_true(cce_results_has(r2, "B", NULL));
    cce_results_close(r2);
    cce_results_close(NULL);
    record_free(&a);
    record_free(&b);
}

/* Another process holding the lock blocks this one the same way; its death releases the lock. */
static void test_lock_other_process(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("results_lock_fork");
    char path[4096];
    snprintf(path, sizeof path, "%s", test_path(dir, "results.h5"));
    write_runs(path, 1);
    for (int kill_it = 0; kill_it < 2; kill_it++) {
        int up[2], down[2];
        assert_int_equal(pipe(up), 0);
        assert_int_equal(pipe(down), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(up[0]);
            close(down[1]);
            cce_results *r = NULL;
            char c = cce_results_open(path, &r) == CCE_OK ? 'k' : 'e';
            if (write(up[1], &c, 1) != 1) _exit(3);
            if (read(down[0], &c, 1) != 1) _exit(4);
            cce_results_close(r);
            _exit(0);
        }
        close(up[1]);
        close(down[0]);
        char c = 0;
        assert_int_equal(read(up[0], &c, 1), 1);
        assert_int_equal(c, 'k');
        expect_locked(path);
        cce_results_runs runs; /* readers still read */
        assert_cce_ok(cce_results_read(path, &runs));
        assert_int_equal(runs.n, 1);
        cce_results_runs_free(&runs);
        int st;
        if (kill_it) {
            kill(pid, SIGKILL);
        } else {
            assert_int_equal(write(down[1], "x", 1), 1);
        }
        assert_int_equal(waitpid(pid, &st, 0), pid);
        if (kill_it)
            assert_true(WIFSIGNALED(st));
        else
            assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        close(up[0]);
        close(down[1]);
        cce_results *r;
        assert_cce_ok(cce_results_open(path, &r));
        cce_results_close(r);
    }
}

/* ---- Durability under SIGKILL ---------------------------------------------------------------- */

/* The child: adds runs "it<iter>-n<j>" until killed, writing a byte to fd after each commit. */
static void child_writer(const char *path, int iter, int fd) {
    cce_results *r;
    if (cce_results_open(path, &r) != CCE_OK) _exit(2);
    for (int j = 0;; j++) {
        record rec;
        char key[64];
        snprintf(key, sizeof key, "it%d-n%d", iter, j);
        record_init(&rec, key, (unsigned)(iter * 1000 + j), (size_t)(j % 5 + 1));
        if (cce_results_add(r, &rec.rec, NULL) != CCE_OK) _exit(3);
        record_free(&rec);
        if (write(fd, "x", 1) != 1) _exit(4);
    }
}

static void test_durability_sigkill(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("results_sigkill");
    char path[4096];
    snprintf(path, sizeof path, "%s", test_path(dir, "results.h5"));
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    print_message("SIGKILL moments from seed %u\n", seed);
    srand(seed);
    size_t total_before = 0;
    int orphans_seen = 0;
    enum { ITERS = 12 };
    for (int iter = 0; iter < ITERS; iter++) {
        int p[2];
        assert_int_equal(pipe(p), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            child_writer(path, iter, p[1]);
        }
        close(p[1]);
        /* Odd iterations wait for a first commit, so that runs accumulate even on a slow
         * machine; the kill then comes 2-60 ms later, anywhere in an add. */
        size_t committed = 0;
        char c;
        if (iter % 2 && read(p[0], &c, 1) == 1) committed++;
        struct timespec ts = {0, (long)(2 + rand() % 59) * 1000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        if (!WIFSIGNALED(st)) fail_msg("the writer ended by itself (status %d)", st);
        char buf[256];
        ssize_t got;
        while ((got = read(p[0], buf, sizeof buf)) > 0) committed += (size_t)got;
        close(p[0]);

        int temps = count_prefixed(dir, "results.h5.tmp.");
        assert_in_range(temps, 0, 1);
        orphans_seen += temps;
        if (!test_file_exists(path)) { /* killed before the empty file was renamed in */
            assert_int_equal(committed, 0);
            assert_int_equal(total_before, 0);
            continue;
        }
        cce_results_runs runs;
        assert_cce_ok(cce_results_read(path, &runs));
        size_t mine = 0;
        for (size_t i = 0; i < runs.n; i++) {
            const cce_run_info *run = &runs.runs[i];
            if (i) assert_true(strcmp(runs.runs[i - 1].id, run->id) < 0);
            int it, j;
            const char *key = cce_run_attr(run, "key");
            assert_int_equal(sscanf(key, "it%d-n%d", &it, &j), 2);
            record want;
            record_init(&want, key, (unsigned)(it * 1000 + j), (size_t)(j % 5 + 1));
            assert_run_equals(run, &want);
            if (it == iter) {
                mine++;
                cce_report rows;
                assert_cce_ok(cce_results_read_layers(path, run->id, &rows));
                assert_same_rows(&rows, &want.layers);
                cce_report_clear(&rows);
            }
            record_free(&want);
        }
        /* every committed run is there, plus at most the one renamed in just before the kill */
        if (mine != committed && mine != committed + 1)
            fail_msg("iteration %d: %zu runs committed, %zu in the file", iter, committed, mine);
        assert_int_equal(runs.n, total_before + mine);
        total_before = runs.n;
        cce_results_runs_free(&runs);
        /* A new writer removes the orphan of the dead one. */
        cce_results *r;
        assert_cce_ok(cce_results_open(path, &r));
        assert_int_equal(count_prefixed(dir, "results.h5.tmp."), 0);
        cce_results_close(r);
    }
    print_message("%zu runs survived %d kills; %d orphaned temporary files removed\n", total_before,
                  ITERS, orphans_seen);
    assert_true(total_before > 0);
}

/* ---- Bad input ------------------------------------------------------------------------------- */

/* An HDF5 file with (optionally) a string attribute format and an int attribute version. */
static void write_plain_hdf5(const char *path, const char *format, int version) {
    cce_hdf5_init();
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0);
    if (format) {
        hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
        H5Tset_size(t, strlen(format) + 1);
        hid_t at = H5Acreate2(f, "format", t, sp, H5P_DEFAULT, H5P_DEFAULT);
        assert_true(H5Awrite(at, t, format) >= 0);
        H5Aclose(at);
        int32_t v = version;
        at = H5Acreate2(f, "version", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT);
        assert_true(H5Awrite(at, H5T_NATIVE_INT32, &v) >= 0);
        H5Aclose(at);
        H5Sclose(sp);
        H5Tclose(t);
        hid_t g = H5Gcreate2(f, "runs", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        H5Gclose(g);
    }
    H5Fclose(f);
}

static void expect_read_fails(const char *path, cce_status want, const char *needle) {
    cce_results_runs runs;
    cce_status s = cce_results_read(path, &runs);
    if (s != want)
        fail_msg("%s: got %s (%s), expected %s", path, cce_strerror(s), cce_error_detail(),
                 cce_strerror(want));
    assert_int_equal(runs.n, 0);
    if (needle && !strstr(cce_error_detail(), needle))
        fail_msg("'%s' lacks '%s'", cce_error_detail(), needle);
    /* the writer refuses it too and leaves it untouched */
    size_t len0 = 0, len1 = 0;
    struct stat st;
    int regular = stat(path, &st) == 0 && S_ISREG(st.st_mode);
    char *before = regular ? test_read_file(path, &len0) : NULL;
    cce_results *r = NULL;
    cce_status ws = cce_results_open(path, &r);
    if (ws == CCE_OK) fail_msg("%s: the writer accepted a bad file", path);
    assert_null(r);
    char *after = regular ? test_read_file(path, &len1) : NULL;
    assert_int_equal(len0, len1);
    if (len0) assert_memory_equal(before, after, len0);
    free(before);
    free(after);
}

static void test_bad_files(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("results_bad");
    char path[4096];
    snprintf(path, sizeof path, "%s", test_path(dir, "missing.h5"));
    cce_results_runs runs;
    assert_int_equal(cce_results_read(path, &runs), CCE_ERR_IO);
    assert_non_null(strstr(cce_error_detail(), path));
    cce_report rows;
    assert_int_equal(cce_results_read_layers(path, "r000001", &rows), CCE_ERR_IO);
    FILE *devnull = fopen("/dev/null", "w");
    assert_int_equal(cce_results_export(path, "runs", CCE_RESULTS_TSV, devnull), CCE_ERR_IO);
    assert_int_equal(cce_results_read("", &runs), CCE_ERR_ARG);

    snprintf(path, sizeof path, "%s", test_path(dir, "text.h5"));
    test_write_file(path, "not an HDF5 file\n", 17);
    expect_read_fails(path, CCE_ERR_FORMAT, "not a readable HDF5 file");
    snprintf(path, sizeof path, "%s", test_path(dir, "empty.h5"));
    test_write_file(path, "", 0);
    expect_read_fails(path, CCE_ERR_FORMAT, path);
    snprintf(path, sizeof path, "%s", test_path(dir, "plain.h5"));
    write_plain_hdf5(path, NULL, 0);
    expect_read_fails(path, CCE_ERR_FORMAT, "no format attribute");
    snprintf(path, sizeof path, "%s", test_path(dir, "model.h5"));
    write_plain_hdf5(path, "cce-model", 1);
    expect_read_fails(path, CCE_ERR_FORMAT, "format is 'cce-model'");
    snprintf(path, sizeof path, "%s", test_path(dir, "v2.h5"));
    write_plain_hdf5(path, "cce-results", 2);
    expect_read_fails(path, CCE_ERR_FORMAT, "version 2");
    snprintf(path, sizeof path, "%s", test_path(dir, "folder.h5"));
    mkdir(path, 0755);
    expect_read_fails(path, CCE_ERR_FORMAT, "not a regular file");

    /* A run without one of its attributes, and one whose layers table lost a column. */
    snprintf(path, sizeof path, "%s", test_path(dir, "torn.h5"));
    write_runs(path, 2);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(H5Adelete_by_name(f, "/runs/r000002", "seconds", H5P_DEFAULT) >= 0);
    H5Fclose(f);
    expect_read_fails(path, CCE_ERR_FORMAT, "/runs/r000002: attribute seconds is missing");
    snprintf(path, sizeof path, "%s", test_path(dir, "torn_layers.h5"));
    write_runs(path, 2);
    f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(H5Ldelete(f, "/runs/r000001/layers/sparsity", H5P_DEFAULT) >= 0);
    H5Fclose(f);
    expect_read_fails(path, CCE_ERR_FORMAT, "/runs/r000001/layers/sparsity is missing");
    assert_int_equal(cce_results_read_layers(path, "r000001", &rows), CCE_ERR_FORMAT);
    assert_int_equal(cce_results_read_layers(path, "r000002", &rows), CCE_OK);
    cce_report_clear(&rows);
    assert_int_equal(cce_results_read_layers(path, "r000009", &rows), CCE_ERR_NOT_FOUND);
    assert_int_equal(cce_results_read_layers(path, "../x", &rows), CCE_ERR_ARG);
    assert_int_equal(cce_results_export(path, "runs", CCE_RESULTS_CSV, devnull), CCE_ERR_FORMAT);
    fclose(devnull);
}

static void test_corrupt_bytes(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("results_corrupt");
    char path[4096], bad[4096];
    snprintf(path, sizeof path, "%s", test_path(dir, "results.h5"));
    snprintf(bad, sizeof bad, "%s", test_path(dir, "bad.h5"));
    write_runs(path, 5);
    size_t len;
    char *good = test_read_file(path, &len);
    assert_non_null(good);
    assert_true(len > 4096);

    /* Truncated anywhere: a clear format error. */
    const size_t cuts[] = {1, 8, 64, 512, len / 4, len / 2, len - 4096, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        test_write_file(bad, good, cuts[i]);
        expect_read_fails(bad, CCE_ERR_FORMAT, bad);
    }

    /* Flipped bytes across the file: never a crash; a read either fails with a format error or
     * succeeds (a flip inside raw data only changes a value); metadata checksums catch many. */
    FILE *devnull = fopen("/dev/null", "w");
    int failed = 0, tried = 0;
    char *copy = malloc(len);
    for (size_t pos = 0; pos < len; pos += len / 120 + 1, tried++) {
        memcpy(copy, good, len);
        copy[pos] = (char)(copy[pos] ^ 0x5a);
        test_write_file(bad, copy, len);
        cce_results_runs runs;
        cce_status s = cce_results_read(bad, &runs);
        if (s != CCE_OK && s != CCE_ERR_FORMAT)
            fail_msg("flip at %zu: %s: %s", pos, cce_strerror(s), cce_error_detail());
        failed += s == CCE_ERR_FORMAT;
        cce_results_runs_free(&runs);
        s = cce_results_export(bad, "layers", CCE_RESULTS_JSON, devnull);
        assert_true(s == CCE_OK || s == CCE_ERR_FORMAT);
        cce_report rows;
        s = cce_results_read_layers(bad, "r000003", &rows);
        assert_true(s == CCE_OK || s == CCE_ERR_FORMAT || s == CCE_ERR_NOT_FOUND);
        cce_report_clear(&rows);
        cce_results *r = NULL;
        s = cce_results_open(bad, &r);
        assert_true(s == CCE_OK || s == CCE_ERR_FORMAT);
        cce_results_close(r);
    }
    print_message("%d of %d flipped bytes detected as format errors\n", failed, tried);
    assert_true(failed > tried / 10);
    fclose(devnull);
    free(copy);
    free(good);
}

static void test_bad_records(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("results_bad_records");
    char path[4096];
    snprintf(path, sizeof path, "%s", test_path(dir, "results.h5"));
    write_runs(path, 1);
    size_t len0;
    char *before = test_read_file(path, &len0);
    cce_results *r;
    assert_cce_ok(cce_results_open(path, &r));
    struct {
        const char *what, *needle;
    } cases[] = {{"bad-name", "bad-name"},          {"space name", "space name"},
                 {"empty name", "has no name"},     {"duplicate", "given twice"},
                 {"empty key", "no key"},           {"NULL key", "no key"},
                 {"NULL experiment", "experiment"}, {"names NULL", "without names"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        record rec;
        record_init(&rec, "good key", 1, 1);
        const char *w = cases[i].what;
        if (!strcmp(w, "bad-name")) rec.names[2] = "bad-name";
        if (!strcmp(w, "space name")) rec.names[0] = "space name";
        if (!strcmp(w, "empty name")) rec.names[1] = "";
        if (!strcmp(w, "duplicate")) rec.names[3] = "ppl";
        if (!strcmp(w, "empty key")) rec.rec.key = "";
        if (!strcmp(w, "NULL key")) rec.rec.key = NULL;
        if (!strcmp(w, "NULL experiment")) rec.rec.experiment = NULL;
        if (!strcmp(w, "names NULL")) rec.rec.metric_names = NULL;
        const char *id = "x";
        cce_status s = cce_results_add(r, &rec.rec, &id);
        if (s != CCE_ERR_ARG) fail_msg("%s: got %s", w, cce_strerror(s));
        assert_null(id);
        if (!strstr(cce_error_detail(), cases[i].needle))
            fail_msg("%s: '%s' lacks '%s'", w, cce_error_detail(), cases[i].needle);
        assert_false(cce_results_has(r, "good key", NULL));
        record_free(&rec);
    }
    assert_int_equal(cce_results_add(r, NULL, NULL), CCE_ERR_ARG);
    assert_int_equal(cce_results_add(NULL, NULL, NULL), CCE_ERR_ARG);
    cce_results_close(r);
    size_t len1;
    char *after = test_read_file(path, &len1);
    assert_int_equal(len0, len1);
    assert_memory_equal(before, after, len0);
    assert_int_equal(count_prefixed(dir, "results.h5.tmp."), 0);
    free(before);
    free(after);
    assert_int_equal(cce_results_open(NULL, &r), CCE_ERR_ARG);
    assert_int_equal(cce_results_open("", &r), CCE_ERR_ARG);
}

/* An orphaned temporary file of a dead writer is removed by the next open; other files that only
 * look alike are left alone. */
static void test_orphans(void **state) {
    (void)state;
    const char *dir = test_scratch_dir("results_orphans");
    char path[4096];
    snprintf(path, sizeof path, "%s", test_path(dir, "results.h5"));
    write_runs(path, 1);
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    waitpid(pid, NULL, 0); /* a pid that is surely dead now */
    char name[128];
    snprintf(name, sizeof name, "results.h5.tmp.%ld.3", (long)pid);
    test_write_file(test_path(dir, name), "x", 1);
    snprintf(name, sizeof name, "results.h5.tmp.%ld.3", (long)getppid()); /* alive */
    test_write_file(test_path(dir, name), "x", 1);
    test_write_file(test_path(dir, "results.h5.tmp.notes"), "x", 1);
    test_write_file(test_path(dir, "other.h5.tmp.1.1"), "x", 1);
    assert_int_equal(count_prefixed(dir, "results.h5.tmp."), 3);
    cce_results *r;
    assert_cce_ok(cce_results_open(path, &r));
    assert_int_equal(count_prefixed(dir, "results.h5.tmp."), 2);
    assert_true(test_file_exists(test_path(dir, "results.h5.tmp.notes")));
    assert_true(test_file_exists(test_path(dir, name)));
    assert_true(test_file_exists(test_path(dir, "other.h5.tmp.1.1")));
    cce_results_close(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),          cmocka_unit_test(test_never_in_place),
        cmocka_unit_test(test_has_and_replace),    cmocka_unit_test(test_lock_same_process),
        cmocka_unit_test(test_lock_other_process), cmocka_unit_test(test_durability_sigkill),
        cmocka_unit_test(test_bad_files),          cmocka_unit_test(test_corrupt_bytes),
        cmocka_unit_test(test_bad_records),        cmocka_unit_test(test_orphans),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
