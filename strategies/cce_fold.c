/* CCE stage 3: least-squares folding of dropped FFN neurons into the kept columns of down_proj
 * (docs/CCE.md). With delta = 0 the folded W' minimises E||W a - W' a_K||^2 over the calibration
 * tokens; see cce_internal.h for the contract. */
#include <cblas.h>
#include <lapacke.h>
#include <stdlib.h>
#include <string.h>

#include "cce_internal.h"

cce_status cce_fold_down(const float *W, int d, int n, const double *G, double delta,
                         const int *keep, int fold, float *out, const char *what) {
    int m = 0;
    for (int j = 0; j < n; j++) m += keep[j] != 0;
    int nd = n - m;
    if (m < 1) return cce_fail(CCE_ERR_RANGE, CCE_NAME ": %s: no neuron kept", what);
    for (int a = 0; a < d; a++)
        for (int j = 0, c = 0; j < n; j++)
            if (keep[j]) out[(int64_t)a * m + c++] = W[(int64_t)a * n + j];
    if (!fold || nd == 0) return CCE_OK;

    int *K = malloc((size_t)m * sizeof *K);           /* [m] kept indices */
    int *D = malloc((size_t)nd * sizeof *D);          /* [nd] dropped indices */
    double *M = malloc((size_t)m * m * sizeof *M);    /* [m, m] G[K, K] + delta I */
    double *X = malloc((size_t)m * nd * sizeof *X);   /* [m, nd] G[K, D], then M^-1 G[K, D] */
    double *WD = malloc((size_t)d * nd * sizeof *WD); /* [d, nd] W[:, D] */
    double *Wn = malloc((size_t)d * m * sizeof *Wn);  /* [d, m] W[:, K], then folded */
    cce_status s = CCE_OK;
    if (!K || !D || !M || !X || !WD || !Wn) {
        s = cce_fail(CCE_ERR_NOMEM, CCE_NAME ": %s: folding %d neurons", what, nd);
        goto done;
    }
    for (int j = 0, a = 0, b = 0; j < n; j++) {
        if (keep[j])
            K[a++] = j;
        else
            D[b++] = j;
    }
    for (int a = 0; a < m; a++) {
        for (int b = 0; b < m; b++) M[(int64_t)a * m + b] = G[(int64_t)K[a] * n + K[b]];
        M[(int64_t)a * m + a] += delta;
        for (int b = 0; b < nd; b++) X[(int64_t)a * nd + b] = G[(int64_t)K[a] * n + D[b]];
    }
    lapack_int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', m, M, m);
    if (info == 0) info = LAPACKE_dpotrs(LAPACK_ROW_MAJOR, 'L', m, nd, M, m, X, nd);
    if (info != 0) {
        s = cce_fail(CCE_ERR_NUMERIC,
                     CCE_NAME ": %s: G[K, K] + delta I (%d kept neurons, delta %g) is not positive "
                              "definite (LAPACK info %d); raise delta_scale",
                     what, m, delta, (int)info);
        goto done;
    }
    for (int a = 0; a < d; a++) {
        for (int b = 0; b < nd; b++) WD[(int64_t)a * nd + b] = W[(int64_t)a * n + D[b]];
        for (int b = 0; b < m; b++) Wn[(int64_t)a * m + b] = W[(int64_t)a * n + K[b]];
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, d, m, nd, 1.0, WD, nd, X, nd, 1.0, Wn, m);
    for (int64_t i = 0; i < (int64_t)d * m; i++) out[i] = (float)Wn[i];
done:
    free(K);
    free(D);
    free(M);
    free(X);
    free(WD);
    free(Wn);
    return s;
}
