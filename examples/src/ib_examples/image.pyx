# cython: language_level=3
"""Flow 6, images: an H x W x 3 NumPy image handed to C as unsigned char** rows, zero-copy.

    img = np.zeros((480, 640, 3), np.uint8)   # H x W x C, as Pillow/imageio/OpenCV give it
    invert(img)                               # C writes straight into img's pixels
    gray = to_gray(img)                       # H x W uint8, computed by C from the RGB rows

IndirectMemory2D.view_from_rows(img) makes one row pointer per index of the first dimension
(per image row), with cols = W * 3 bytes (the other dimensions, flattened) and format 'B':
the table libpng's png_bytepp or libjpeg's JSAMPARRAY expect. Nothing is reshaped or copied.
Every row must be C-contiguous: a pixel-strided or Fortran-ordered array raises BufferError
naming the dimension (np.ascontiguousarray(img) copies it first, if a copy is what you want).
The view holds img's buffer until the `with` block ends.
"""
import numpy as np

from indirect_buffer.buffer_impl cimport IndirectMemory2D

from ib_examples cimport ib_matrix_decl as c


def live_allocations():
    """Live allocations of this module's copy of clib (images allocate nothing in C)."""
    return c.ib_live_allocations()


def invert(img):
    """Invert an 8-bit image in place, p = 255 - p: H x W or H x W x C uint8, C-contiguous rows."""
    cdef IndirectMemory2D rows
    with IndirectMemory2D.view_from_rows(img) as rows:
        # uchar_table checks the format ('B'), writability and that rows start at table[i].
        if c.ib_image_invert(rows.uchar_table(True), rows.rows(), rows.cols()) != c.IB_OK:
            raise ValueError("ib_image_invert refused the image")


def to_gray(rgb):
    """Luma of an H x W x 3 uint8 RGB image as a new H x W uint8 array (C reads rgb's rows)."""
    shape = np.shape(rgb)
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 image, got shape {shape}")
    gray = np.empty(shape[:2], dtype=np.uint8)
    cdef IndirectMemory2D src, dst
    # readonly=True: a read-only image (img.flags.writeable = False) is fine as input.
    with IndirectMemory2D.view_from_rows(rgb, readonly=True) as src, \
            IndirectMemory2D.view_from_rows(gray) as dst:
        # C does not convert unsigned char** to const unsigned char* const* implicitly: cast.
        if c.ib_image_rgb_to_gray(<const unsigned char* const*>src.uchar_table(False),
                                  dst.uchar_table(True), dst.rows(), dst.cols()) != c.IB_OK:
            raise ValueError("ib_image_rgb_to_gray refused the image")
    return gray
