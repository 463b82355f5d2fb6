/* Checks ib_matrix on its own: `make -C clib check` builds this with ASan/UBSan and runs it. */
#include "ib_matrix.h"

#include <stdio.h>

static int failures = 0;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                              \
        }                                                                            \
    } while (0)

static void test_matrix(void)
{
    long base = ib_live_allocations();
    double **m = ib_matrix_new(3, 4);
    CHECK(m != NULL);
    if (m == NULL)
        return;
    CHECK(ib_live_allocations() == base + 4); /* table + 3 rows */
    CHECK(m[2][3] == 0.0);
    ib_matrix_iota(m, 3, 4);
    CHECK(m[1][2] == 6.0);
    CHECK(ib_matrix_sum((const double *const *)m, 3, 4) == 66.0);
    ib_matrix_scale(m, 3, 4, 0.5);
    CHECK(m[2][3] == 5.5);
    CHECK(ib_matrix_sum((const double *const *)m, 3, 4) == 33.0);
    ib_matrix_free(m, 3);
    CHECK(ib_live_allocations() == base);
    ib_matrix_free(NULL, 3);
    CHECK(ib_matrix_new(0, 4) == NULL);
    CHECK(ib_matrix_new(4, 0) == NULL);
    CHECK(ib_live_allocations() == base);
}

static void test_block(void)
{
    long base = ib_live_allocations();
    double **a = ib_block_new(3, 2);
    CHECK(a != NULL);
    if (a == NULL)
        return;
    CHECK(ib_live_allocations() == base + 2); /* table + one data block */
    CHECK(a[1] == a[0] + 2 && a[2] == a[0] + 4);
    ib_matrix_iota(a, 3, 2);
    CHECK(a[0][5] == 5.0); /* rows are back to back */
    ib_block_free(a);
    ib_block_free(NULL);
    CHECK(ib_live_allocations() == base);
    CHECK(ib_block_new((size_t)-1, 16) == NULL); /* size overflow */
    CHECK(ib_live_allocations() == base);
}

static void test_allocation_failures(void)
{
    long base = ib_live_allocations();
    long n;
    /* Fail at every possible point: whatever was allocated must be freed again. */
    for (n = 0; n < 4; n++) {
        ib_fail_allocations_after(n);
        CHECK(ib_matrix_new(3, 4) == NULL);
        CHECK(ib_live_allocations() == base);
    }
    for (n = 0; n < 2; n++) {
        ib_fail_allocations_after(n);
        CHECK(ib_block_new(3, 4) == NULL);
        CHECK(ib_live_allocations() == base);
    }
    for (n = 0; n < 5; n++) {
        ib_fail_allocations_after(n);
        CHECK(ib_model_new(3, 4) == NULL);
        CHECK(ib_live_allocations() == base);
    }
    ib_fail_allocations_after(-1);
    {
        double **m = ib_matrix_new(3, 4);
        CHECK(m != NULL);
        ib_matrix_free(m, 3);
    }
    CHECK(ib_live_allocations() == base);
}

static void test_image(void)
{
    unsigned char r0[3] = {0, 10, 255}, r1[3] = {1, 128, 254};
    unsigned char *img[2];
    img[0] = r0;
    img[1] = r1;
    CHECK(ib_image_invert(img, 2, 3) == IB_OK);
    CHECK(r0[0] == 255 && r0[1] == 245 && r0[2] == 0);
    CHECK(r1[0] == 254 && r1[1] == 127 && r1[2] == 1);
    img[1] = NULL;
    CHECK(ib_image_invert(img, 2, 3) == IB_EINVAL);
    CHECK(r0[0] == 255); /* untouched on error */
    CHECK(ib_image_invert(NULL, 2, 3) == IB_EINVAL);
    CHECK(ib_image_invert(NULL, 0, 0) == IB_OK);
}

static void test_image_rgb_to_gray(void)
{
    /* 2 x 2 pixels: black, white, pure red, a grey-green mix. */
    const unsigned char c0[6] = {0, 0, 0, 255, 255, 255}, c1[6] = {255, 0, 0, 10, 200, 30};
    const unsigned char *rgb[2];
    unsigned char g0[2] = {7, 7}, g1[2] = {7, 7};
    unsigned char *gray[2];
    rgb[0] = c0;
    rgb[1] = c1;
    gray[0] = g0;
    gray[1] = g1;
    CHECK(ib_image_rgb_to_gray(rgb, gray, 2, 2) == IB_OK);
    CHECK(g0[0] == 0 && g0[1] == 255);
    CHECK(g1[0] == (77 * 255 + 128) >> 8);                    /* 77 */
    CHECK(g1[1] == (77 * 10 + 150 * 200 + 29 * 30 + 128) >> 8); /* 124 */
    g0[0] = 7;
    gray[1] = NULL;
    CHECK(ib_image_rgb_to_gray(rgb, gray, 2, 2) == IB_EINVAL);
    CHECK(g0[0] == 7); /* untouched on error */
    gray[1] = g1;
    rgb[1] = NULL;
    CHECK(ib_image_rgb_to_gray(rgb, gray, 2, 2) == IB_EINVAL);
    CHECK(ib_image_rgb_to_gray(NULL, gray, 2, 2) == IB_EINVAL);
    CHECK(ib_image_rgb_to_gray(rgb, NULL, 2, 2) == IB_EINVAL);
    CHECK(ib_image_rgb_to_gray(NULL, NULL, 0, 5) == IB_OK);
    CHECK(g0[0] == 7);
}

static void test_confusion(void)
{
    const int truth[6] = {0, 1, 2, 2, 1, 0};
    const int pred[6] = {0, 2, 2, 2, 1, 1};
    int r0[3] = {9, 9, 9}, r1[3] = {9, 9, 9}, r2[3] = {9, 9, 9};
    int *counts[3];
    const int bad[1] = {3};
    counts[0] = r0;
    counts[1] = r1;
    counts[2] = r2;
    CHECK(ib_confusion(truth, pred, 6, counts, 3) == IB_OK);
    CHECK(r0[0] == 1 && r0[1] == 1 && r0[2] == 0);
    CHECK(r1[0] == 0 && r1[1] == 1 && r1[2] == 1);
    CHECK(r2[0] == 0 && r2[1] == 0 && r2[2] == 2);
    r0[0] = 7;
    CHECK(ib_confusion(bad, pred, 1, counts, 3) == IB_EINVAL);
    CHECK(ib_confusion(truth, bad, 1, counts, 3) == IB_EINVAL);
    CHECK(r0[0] == 7); /* untouched on error */
    CHECK(ib_confusion(truth, pred, 6, NULL, 3) == IB_EINVAL);
}

static void test_model(void)
{
    long base = ib_live_allocations();
    ib_model *m = ib_model_new(2, 3);
    double **coef;
    const double x[3] = {1.0, 2.0, 3.0};
    double y[2] = {0.0, 0.0};
    CHECK(m != NULL);
    if (m == NULL)
        return;
    CHECK(ib_live_allocations() == base + 4); /* handle + table + 2 rows */
    CHECK(ib_model_rows(m) == 2 && ib_model_cols(m) == 3);
    coef = ib_model_coef(m);
    CHECK(coef[0][0] == 1.0 && coef[1][1] == 1.0 && coef[0][1] == 0.0);
    CHECK(ib_model_predict(m, x, y) == IB_OK);
    CHECK(y[0] == 1.0 && y[1] == 2.0);
    coef[1][2] = 10.0; /* writes through the borrowed table reach the model */
    CHECK(ib_model_predict(m, x, y) == IB_OK);
    CHECK(y[1] == 32.0);
    CHECK(ib_model_predict(m, NULL, y) == IB_EINVAL);
    ib_model_free(m);
    ib_model_free(NULL);
    CHECK(ib_model_coef(NULL) == NULL);
    CHECK(ib_model_new(0, 1) == NULL);
    CHECK(ib_live_allocations() == base);
}

int main(void)
{
    test_matrix();
    test_block();
    test_allocation_failures();
    test_image();
    test_image_rgb_to_gray();
    test_confusion();
    test_model();
    CHECK(ib_live_allocations() == 0);
    if (failures) {
        fprintf(stderr, "test_clib: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_clib: all checks passed\n");
    return 0;
}
