"""The node's images: references, a content-addressed store, registry pulls, archives, GC."""

from sampan.node.images.archive import ArchiveError, import_archive
from sampan.node.images.build import build_busybox
from sampan.node.images.gc import GCResult, ImageGC
from sampan.node.images.layer import LayerError, unpack_layer
from sampan.node.images.reference import Reference, ReferenceError, normalize, parse
from sampan.node.images.store import ImageStore

__all__ = ["ArchiveError", "GCResult", "ImageGC", "ImageStore", "LayerError", "Reference",
           "ReferenceError", "build_busybox", "import_archive", "normalize", "parse",
           "unpack_layer"]
