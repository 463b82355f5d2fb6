/* ib_stream: a decoder lending blocks to a callback and an encoder whose buffer is valid until
 * the next call; see ib_stream.h for the contracts. */
#include "ib_stream.h"

#include <stdint.h>
#include <string.h>

#include "ib_alloc.h"

/* --- 10. decoder ---------------------------------------------------------------------------- */

/* Frees the scratch buffer of ib_decode (channels made so far, then the table), scribbling
 * over every part first so that a pointer kept past the callback reads garbage. */
static void scratch_free(int32_t **channels, int made, int nsamples)
{
    int c;
    for (c = 0; c < made; c++) {
        memset(channels[c], IB_SCRIBBLE, (size_t)nsamples * sizeof **channels);
        ib_free(channels[c]);
    }
    memset(channels, IB_SCRIBBLE, (size_t)made * sizeof *channels);
    ib_free(channels);
}

int ib_decode(int nchannels, int nblocks, int nsamples, ib_block_cb cb, void *ctx)
{
    int32_t **channels;
    int c, k, s, rc;
    if (cb == NULL || nchannels < 1 || nsamples < 1 || nblocks < 0)
        return IB_EINVAL;
    /* The largest value, of the last block's last channel and sample, must fit. */
    if (nblocks > 0 && (int64_t)(nblocks - 1) * 1000 + (int64_t)(nchannels - 1) * 100
                               + (nsamples - 1) > INT32_MAX)
        return IB_EINVAL;
    if (nblocks == 0)
        return IB_OK;
    channels = ib_calloc((size_t)nchannels, sizeof *channels);
    if (channels == NULL)
        return IB_ENOMEM;
    for (c = 0; c < nchannels; c++) {
        channels[c] = ib_calloc((size_t)nsamples, sizeof **channels);
        if (channels[c] == NULL) {
            scratch_free(channels, c, nsamples);
            return IB_ENOMEM;
        }
    }
    rc = IB_OK;
    for (k = 0; k < nblocks && rc == IB_OK; k++) {
        /* Overwrite the scratch buffer with block k: the previous block is gone. */
        for (c = 0; c < nchannels; c++)
            for (s = 0; s < nsamples; s++)
                channels[c][s] = (int32_t)((int64_t)k * 1000 + (int64_t)c * 100 + s);
        rc = cb((const int32_t *const *)channels, nchannels, nsamples, ctx);
    }
    scratch_free(channels, nchannels, nsamples);
    return rc;
}

/* --- 11. encoder ---------------------------------------------------------------------------- */

struct ib_encoder {
    int nchannels;
    double *sums;  /* nchannels running sums */
    long samples;  /* samples consumed per channel */
    float **buf;   /* the outstanding buffer (table into one data block), or NULL */
    int buf_n;     /* samples per channel in buf */
};

/* Scribbles over and frees the outstanding buffer, if any. */
static void encoder_drop_buffer(ib_encoder *enc)
{
    if (enc->buf == NULL)
        return;
    memset(enc->buf[0], IB_SCRIBBLE, (size_t)enc->nchannels * (size_t)enc->buf_n * sizeof(float));
    ib_free(enc->buf[0]); /* buf[0] owns the whole data block */
    memset(enc->buf, IB_SCRIBBLE, (size_t)enc->nchannels * sizeof *enc->buf);
    ib_free(enc->buf);
    enc->buf = NULL;
    enc->buf_n = 0;
}

ib_encoder *ib_encoder_new(int nchannels)
{
    ib_encoder *enc;
    if (nchannels < 1)
        return NULL;
    enc = ib_calloc(1, sizeof *enc);
    if (enc == NULL)
        return NULL;
    enc->sums = ib_calloc((size_t)nchannels, sizeof *enc->sums);
    if (enc->sums == NULL) {
        ib_free(enc);
        return NULL;
    }
    enc->nchannels = nchannels;
    return enc;
}

float **ib_encoder_buffer(ib_encoder *enc, int n)
{
    float **buf;
    float *data;
    int c;
    if (enc == NULL)
        return NULL;
    encoder_drop_buffer(enc); /* the previous buffer is invalid from here on, whatever happens */
    if (n < 1 || (size_t)n > SIZE_MAX / sizeof(float) / (size_t)enc->nchannels)
        return NULL;
    buf = ib_calloc((size_t)enc->nchannels, sizeof *buf);
    if (buf == NULL)
        return NULL;
    data = ib_calloc((size_t)enc->nchannels * (size_t)n, sizeof *data);
    if (data == NULL) {
        ib_free(buf);
        return NULL;
    }
    for (c = 0; c < enc->nchannels; c++)
        buf[c] = data + (size_t)c * (size_t)n;
    enc->buf = buf;
    enc->buf_n = n;
    return buf;
}

int ib_encoder_wrote(ib_encoder *enc, int n)
{
    int c, s;
    if (enc == NULL || n < 0 || n > enc->buf_n)
        return IB_EINVAL; /* also n > 0 without a buffer: buf_n is then 0 */
    for (c = 0; c < enc->nchannels; c++)
        for (s = 0; s < n; s++)
            enc->sums[c] += enc->buf[c][s];
    enc->samples += n;
    encoder_drop_buffer(enc);
    return IB_OK;
}

double ib_encoder_sum(const ib_encoder *enc, int channel)
{
    if (enc == NULL || channel < 0 || channel >= enc->nchannels)
        return 0.0;
    return enc->sums[channel];
}

long ib_encoder_samples(const ib_encoder *enc)
{
    return enc == NULL ? 0 : enc->samples;
}

void ib_encoder_free(ib_encoder *enc)
{
    if (enc == NULL)
        return;
    encoder_drop_buffer(enc);
    ib_free(enc->sums);
    ib_free(enc);
}
