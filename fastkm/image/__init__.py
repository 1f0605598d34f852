"""Image color quantization by weighted k-means: ``quantize``, ``Palette``, ``open_image``.

    >>> import fastkm
    >>> result = fastkm.quantize("photo.jpg", 64)            # doctest: +SKIP
    >>> result.save("photo.png"); result.psnr                # doctest: +SKIP

How it works:

1. Histogram: the distinct colors of the image and their pixel counts, in a
   compiled hash table (a 24-bit RGB or 32-bit RGBA key per pixel; a dense table
   of 2**24 counts for large RGB images).
2. Clustering: ``fastkm.KMeans`` on the distinct colors weighted by their counts,
   which is exactly k-means on all the pixels. It is seeded cheaply: k-means++
   on the weighted means of coarse color bins (5 bits per channel), Lloyd on
   finer bins (6 bits), then up to 20 Lloyd iterations on the exact histogram
   (the default preset). ``preset='converged'`` runs k-means++ and Lloyd to
   convergence on the histogram itself (what scikit-learn computes on all the
   pixels); ``preset='fast'`` stops after the coarse bins.
3. Palette: the centers rounded to 8 bits (converted back from OKLab or CIELab
   when clustering there).
4. Remap, exact and parallel: the nearest entry of every distinct color, then a
   table lookup per pixel (or, without a histogram, every pixel on its own: the
   previous pixel's answer when it has the same color, or when it is nearer to
   that entry than half the gap to the entry's nearest neighbour (triangle
   inequality), else the few entries that can be nearest anywhere in its color
   cell). Ties between equally near entries go to the smallest color, so the
   result depends neither on the order of the palette nor on the thread count.
5. Entries are sorted by popularity (pixel count), which also makes PNG files
   smaller; unused entries are dropped.

Alpha: fully transparent pixels map to one transparent entry (0, 0, 0, 0);
partly transparent pixels are clustered with the colors in premultiplied form.
An alpha channel that is opaque everywhere is dropped.
"""
from fastkm.image._io import open_image
from fastkm.image._palette import Palette
from fastkm.image._quantize_fn import quantize
from fastkm.image._result import QuantizedImage

__all__ = ["Palette", "QuantizedImage", "open_image", "quantize"]
