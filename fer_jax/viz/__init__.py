"""Figures of training diagnostics and explanation reports (matplotlib Agg, OpenCV, Pillow)."""
from fer_jax.viz.overlays import (colourise, frame_grid, jpeg_bytes, label_frame, map_on_face,
                                  occlude_preview, overlay, png_bytes, resize_maps, tile)
from fer_jax.viz.plots import (bar_table, confusion_grid, confusion_matrix, deletion_insertion,
                               difference_curves, occlusion_curves, prediction_timeline,
                               trend_lines, trend_maps)
from fer_jax.viz.sampling_maps import plot_sampling_map
from fer_jax.viz.video import gif_bytes, write_video

__all__ = ["bar_table", "colourise", "confusion_grid", "confusion_matrix",
           "deletion_insertion", "difference_curves", "frame_grid", "gif_bytes", "jpeg_bytes",
           "label_frame", "map_on_face", "occlude_preview", "occlusion_curves", "overlay",
           "plot_sampling_map", "png_bytes", "prediction_timeline", "resize_maps", "tile",
           "trend_lines", "trend_maps", "write_video"]
