"""End-to-end walkthrough of every memory flow: python -m ib_examples.demo

Prints what each flow does, with numbers and clib's live-allocation counts, checks every result
against NumPy, and exits with status 1 if any check failed.
"""
import gc
import sys

import numpy as np

from indirect_buffer import IndirectMemory2D

from . import borrowed, ctypes_only, image, lent, nanny_managed, numpy_in, owned, tensor

failures = []


def check(ok, what):
    print(f"    [{'ok' if ok else 'FAILED'}] {what}")
    if not ok:
        failures.append(what)


def demo_owned():
    print("1. owned: Python allocates, C reads and writes")
    base = owned.live_allocations()
    mem = IndirectMemory2D.create_memory(2, 3, "d")
    owned.matrix_iota(mem)
    owned.matrix_scale(mem, 2.0)
    total = owned.matrix_sum(mem)
    print(f"    iota, scale by 2 -> {mem.to_numpy().tolist()}, sum {total}")
    expected = np.arange(6.0).reshape(2, 3) * 2
    check(np.array_equal(mem.to_numpy(), expected) and total == expected.sum(),
          "C results match NumPy")
    check(owned.live_allocations() == base, "clib allocated nothing (indirect_buffer owns it)")


def demo_borrowed():
    print("2. borrowed: a view of an ib_model's coefficient table")
    base = borrowed.live_allocations()
    model = borrowed.Model(2, 3)
    view = memoryview(model.coef())
    view[1, 2] = 10.0
    y = list(model.predict([1.0, 2.0, 3.0]))
    print(f"    coef[1, 2] = 10 through the view -> predict([1, 2, 3]) = {y}")
    check(y == [1.0, 32.0], "C sees the write")
    del model
    gc.collect()
    print(f"    model deleted, view alive: coef[1, 2] = {view[1, 2]}, "
          f"live allocations {borrowed.live_allocations() - base}")
    check(view[1, 2] == 10.0 and borrowed.live_allocations() == base + 4,
          "the view keeps the model (handle + table + 2 rows) alive")
    view.release()
    print(f"    view released: live allocations {borrowed.live_allocations() - base}")
    check(borrowed.live_allocations() == base, "ib_model_free ran once")


def demo_nanny_managed():
    print("3. nanny-managed: C allocates, ib_matrix_free / ib_block_free run after the last view")
    base = nanny_managed.live_allocations()
    for name, new, allocs in [("ib_matrix_new", nanny_managed.matrix_new, 4),
                              ("ib_block_new", nanny_managed.block_new, 2)]:
        mem = new(3, 4)
        view = memoryview(mem)
        view[2, 3] = 1.5
        del mem
        live = nanny_managed.live_allocations() - base
        print(f"    {name}(3, 4), wrapper deleted, view alive: {live} live allocations")
        check(live == allocs and view[2, 3] == 1.5, f"{name}: the view keeps the matrix alive")
        view.release()
        check(nanny_managed.live_allocations() == base, f"{name}: freed once by the library")
    try:
        nanny_managed.matrix_from_rows([[1.0, 2.0], [3.0, "four"]])
    except TypeError as exc:
        print(f"    matrix_from_rows with a bad element: TypeError ({exc})")
    check(nanny_managed.live_allocations() == base, "half-filled matrix freed on the exception")
    nanny_managed.fail_allocations_after(2)
    try:
        nanny_managed.matrix_new(3, 4)
        check(False, "allocation failure raises MemoryError")
    except MemoryError as exc:
        print(f"    3rd allocation made to fail: MemoryError ({exc})")
    finally:
        nanny_managed.fail_allocations_after(-1)
    check(nanny_managed.live_allocations() == base, "clib freed the partial matrix")


def demo_numpy_in():
    print("4. NumPy in: NumPy rows passed to C as a T**, zero-copy")
    rows = [np.arange(3.0), np.ones(3), np.full(3, 5.0)]
    before = [r.copy() for r in rows]
    numpy_in.scale_rows(rows, 2.0)
    print(f"    scale_rows(rows, 2) -> {[r.tolist() for r in rows]}")
    check(all(np.array_equal(r, 2 * b) for r, b in zip(rows, before)),
          "C wrote into the NumPy arrays")
    check(numpy_in.sum_rows(rows) == sum(r.sum() for r in rows), "sum matches NumPy")
    truth = np.array([0, 1, 2, 2, 1, 0], dtype=np.int32)
    pred = np.array([0, 2, 2, 2, 1, 1], dtype=np.int32)
    counts = np.zeros((3, 3), dtype=np.int32)
    numpy_in.confusion(truth, pred, counts)
    expected = np.zeros((3, 3), dtype=np.int32)
    np.add.at(expected, (truth, pred), 1)
    print(f"    confusion matrix (int**) -> {counts.tolist()}")
    check(np.array_equal(counts, expected), "confusion matches NumPy")


def demo_ctypes_only():
    print("5. ctypes only: clib loaded with ctypes, no Cython of our own")
    base = ctypes_only.live_allocations()
    mem = ctypes_only.matrix_new(2, 3)
    memoryview(mem)[1, 2] = 4.0
    ctypes_only.matrix_scale(mem, 0.5)
    total = ctypes_only.matrix_sum(mem)
    print(f"    ib_matrix_new(2, 3), [1, 2] = 4, scale by 0.5 -> sum {total}, "
          f"live allocations {ctypes_only.live_allocations() - base}")
    check(total == 2.0 and ctypes_only.live_allocations() == base + 3, "ctypes flow computes")
    del mem
    check(ctypes_only.live_allocations() == base, "ib_matrix_free ran once")
    model = ctypes_only.Model(2, 3)
    coef = model.coef()
    del model
    memoryview(coef)[0, 1] = 2.0
    print(f"    model deleted, coef alive: {coef.to_numpy().tolist()}")
    check(ctypes_only.live_allocations() == base + 4, "coef keeps the model alive")
    del coef
    check(ctypes_only.live_allocations() == base, "ib_model_free ran once")


def demo_image():
    print("6. images: an H x W x 3 NumPy image passed to C as unsigned char** rows, zero-copy")
    rgb = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0]],
                    [[10, 200, 30], [0, 0, 255], [128, 128, 128]]], dtype=np.uint8)
    wide = rgb.astype(np.uint32)  # uint8 arithmetic would wrap around
    expected_gray = ((77 * wide[..., 0] + 150 * wide[..., 1] + 29 * wide[..., 2] + 128)
                     >> 8).astype(np.uint8)
    gray = image.to_gray(rgb)
    print(f"    to_gray of a 2 x 3 x 3 image -> {gray.tolist()}")
    check(np.array_equal(gray, expected_gray), "C's luma matches NumPy")
    before = rgb.copy()
    image.invert(rgb)
    print(f"    invert in place -> row 0 = {rgb[0].tolist()}")
    check(np.array_equal(rgb, 255 - before), "C wrote into the NumPy array itself")
    refused = None
    try:
        image.invert(np.asfortranarray(before))  # rows not contiguous: no silent copy
    except BufferError as exc:
        refused = exc
        print(f"    Fortran-ordered image: BufferError ({exc})")
    check(refused is not None, "a Fortran-ordered image is refused, not copied")


def demo_tensor():
    print("7. N-D: a double*** tensor and a stack of frames (unsigned char** over H x W blocks)")
    base = tensor.live_allocations()
    t = tensor.tensor_new(2, 3, 4)
    print(f"    tensor_new(2, 3, 4): {t!r}, {tensor.live_allocations() - base} live allocations")
    tensor.tensor_fill_index(t)
    view = memoryview(t)
    print(f"    C filled it: memoryview(t)[1, 2, 3] = {view[1, 2, 3]}, sum {tensor.tensor_sum(t)}")
    i, j, k = np.indices((2, 3, 4))
    expected = (i * 10000 + j * 100 + k).astype(float)
    check(np.array_equal(t.to_numpy(), expected) and view.tolist() == expected.tolist(),
          "C's tensor matches NumPy, read through memoryview and to_numpy")
    check(tensor.tensor_sum(expected) == expected.sum(), "a NumPy 3-D array summed by C")
    del t
    check(tensor.live_allocations() - base == 3, "the view keeps the tensor alive")
    view.release()
    check(tensor.live_allocations() == base, "ib_tensor_free ran after the last view")
    video = (np.arange(4 * 2 * 3) % 7).reshape(4, 2, 3).astype(np.uint8)
    mean = tensor.frames_mean(video)
    print(f"    mean of 4 frames of 2 x 3 -> {mean.tolist()}")
    expected_mean = ((video.astype(np.uint32).sum(0) + 2) // 4).astype(np.uint8)
    check(np.array_equal(mean, expected_mean), "C's mean frame matches NumPy")
    before = video.copy()
    tensor.frames_add(video, 250)
    check(np.array_equal(video, np.minimum(before.astype(int) + 250, 255)),
          "frames_add wrote into the NumPy video itself, saturating")
    frames = tensor.frames_new(3, 2, 2)
    tensor.frames_add(frames, 9)
    check(frames.to_numpy().tolist() == np.full((3, 2, 2), 9).tolist(),
          "frames from ib_frames_new, written by C")
    del frames
    check(tensor.live_allocations() == base, "ib_frames_free ran")


def demo_lent():
    print("8. lent: a decoder's callback block, an encoder buffer valid until wrote()")
    for name, mod in [("Cython (lent.pyx, from_ptr)", lent),
                      ("ctypes (ctypes_only, from_ctype_ptr)", ctypes_only)]:
        print(f"    {name}:")
        base = mod.live_allocations()
        kept = []

        def on_block(block):
            # block: lent, valid only during this call; the binding revokes it on return.
            if kept:  # C has overwritten its scratch buffer in place with this block
                print(f"    in block {len(kept)}'s callback: block {block.to_numpy()[0].tolist()}"
                      f"..., the view kept from block 0 still {kept[0][0].tolist()[0]}...")
            kept.append((memoryview(block), mod.live_allocations() - base))

        blocks = mod.decode(2, 3, 4, on_block)
        view, live_inside = kept[0]
        print(f"    decode(2 channels, 3 blocks, 4 samples): {blocks} callbacks from one scratch "
              f"buffer ({live_inside} allocations), scribbled over (0xA5) and freed by now")
        print(f"    memoryview kept from block 0 -> {view.tolist()}")
        check(all(v.tolist() == [[k * 1000 + c * 100 + s for s in range(4)] for c in range(2)]
                  for k, (v, _) in enumerate(kept)),
              "views kept past the callback read the values seen when it returned")
        check(mod.live_allocations() == base, "the decoder freed its scratch buffer")
        enc = mod.Encoder(2)
        buf = enc.buffer(3)
        view = memoryview(buf)
        view[0, 0], view[0, 1], view[1, 2] = 1.5, 2.5, -1.0
        enc.wrote(3)  # revokes buf, then C consumes and frees it
        view[0, 0] = 100.0  # into the view's private snapshot, not into C's freed buffer
        sums = [enc.sum(0), enc.sum(1)]
        print(f"    encoder: buffer(3) filled, wrote(3) -> sums {sums}; buffer released: "
              f"{buf.released}; the kept view reads {view.tolist()}")
        check(sums == [4.0, -1.0] and view.tolist() == [[100.0, 2.5, 0.0], [0.0, 0.0, -1.0]],
              "the view kept past wrote() has its own copy; C consumed what was written before")
        enc.close()
        check(mod.live_allocations() == base, "ib_encoder_free ran")


def main():
    for step in (demo_owned, demo_borrowed, demo_nanny_managed, demo_numpy_in,
                 demo_ctypes_only, demo_image, demo_tensor, demo_lent):
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - report it and go on with the other flows
            check(False, f"{step.__name__} raised {type(exc).__name__}: {exc}")
    if failures:
        print(f"demo: {len(failures)} check(s) FAILED")
        return 1
    print("demo: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
