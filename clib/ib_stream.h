/*
 * ib_stream: the two shapes in which real C libraries *lend* T** memory for a limited time,
 * part of the sample library clib (link ib_stream.c together with ib_matrix.c; it uses the
 * same allocation counter, ib_live_allocations(), and fault injection).
 *
 *   1. A callback API (libFLAC's write callback, libpng's progressive rows, audio plug-in
 *      process() calls): ib_decode() calls you once per block with a table of channel
 *      pointers that is valid only during that call. The decoder reuses one scratch buffer,
 *      overwriting it for every block, and frees it when it returns.
 *   2. A "valid until the next call" API (vorbis_analysis_buffer / vorbis_analysis_wrote):
 *      ib_encoder_buffer() returns a float** that you fill, valid only until the next
 *      ib_encoder_wrote(), ib_encoder_buffer() or ib_encoder_free() on the same encoder.
 *
 * To make a pointer kept past its validity fail loudly, the library scribbles over (memset to
 * 0xA5) every buffer it is done with before freeing it. Error reporting and NULL handling
 * follow ib_matrix.h. Not thread-safe, like the rest of clib.
 */
#ifndef IB_STREAM_H
#define IB_STREAM_H

#include <stdint.h>

#include "ib_matrix.h" /* IB_API, IB_OK, IB_EINVAL, ib_live_allocations */

#ifdef __cplusplus
extern "C" {
#endif

/* The byte every buffer is filled with just before it is freed. */
#define IB_SCRIBBLE 0xA5

/* --- 10. A decoder that lends a block to a callback ----------------------------------------- */

/* Called once per block: channels[c][s] is sample s of channel c, for c < nchannels and
 * s < nsamples. channels and every channels[c] are valid only until the callback returns:
 * the next block overwrites them, and ib_decode frees them (scribbled) before it returns.
 * Return 0 to go on, anything else to stop decoding (ib_decode then returns that value). */
typedef int (*ib_block_cb)(const int32_t *const *channels, int nchannels, int nsamples,
                           void *ctx);

/* Decodes nblocks blocks of nsamples samples per channel, calling cb(channels, nchannels,
 * nsamples, ctx) for each, in order. Block k holds, for channel c and sample s:
 *     channels[c][s] == k * 1000 + c * 100 + s
 * The scratch buffer is one table of nchannels pointers plus one allocation per channel
 * (nchannels + 1 allocations, made before the first block and freed before returning; none
 * if nblocks is 0). Returns IB_OK after the last block, the callback's return value if it was
 * nonzero (no further block is decoded), or before any callback: IB_EINVAL if cb is NULL,
 * nchannels or nsamples is < 1, nblocks < 0, or the last block's values would not fit in an
 * int32_t; IB_ENOMEM if the scratch buffer cannot be allocated. (A callback that stops with
 * a negative value should avoid these two codes if the caller must tell them apart.) */
IB_API int ib_decode(int nchannels, int nblocks, int nsamples, ib_block_cb cb, void *ctx);

/* --- 11. An encoder whose input buffer is valid until the next call ------------------------- */

/* An opaque encoder of nchannels channels: it "encodes" by adding up, per channel, every
 * sample written to it. */
typedef struct ib_encoder ib_encoder;

/* NULL if nchannels < 1 or on allocation failure (two allocations: the handle and its
 * per-channel sums). Free with ib_encoder_free. */
IB_API ib_encoder *ib_encoder_new(int nchannels);

/* A zeroed buffer for n samples per channel: buf[c][s] is sample s of channel c (a table of
 * nchannels pointers into one data block: two allocations). It is valid until the next
 * ib_encoder_wrote, ib_encoder_buffer or ib_encoder_free on enc, which scribble over it and
 * free it. A buffer still outstanding is freed (discarded, nothing written) by this call
 * first. NULL (and no buffer outstanding) if enc is NULL, n < 1 or on allocation failure. */
IB_API float **ib_encoder_buffer(ib_encoder *enc, int n);

/* Consumes the first n samples of every channel of the outstanding buffer: adds them to the
 * channel's running sum. Then the buffer is scribbled over and freed (also when n is 0).
 * IB_EINVAL (nothing consumed, the buffer stays valid) if enc is NULL, n < 0, n is more than
 * the buffer holds, or no buffer is outstanding while n > 0; n == 0 without a buffer is fine
 * (nothing to do). */
IB_API int ib_encoder_wrote(ib_encoder *enc, int n);

/* Sum of every sample consumed so far on channel (0 if enc is NULL or channel is out of
 * range). */
IB_API double ib_encoder_sum(const ib_encoder *enc, int channel);

/* Samples consumed so far per channel (0 if enc is NULL). */
IB_API long ib_encoder_samples(const ib_encoder *enc);

/* Frees the encoder and the buffer it may still have outstanding (scribbled). NULL is
 * allowed. */
IB_API void ib_encoder_free(ib_encoder *enc);

#ifdef __cplusplus
}
#endif

#endif /* IB_STREAM_H */
