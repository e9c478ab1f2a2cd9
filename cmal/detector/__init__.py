"""A CenterNet-style region detector: pixels to K regions with box, score, tag, attribute, feature.

Output contract (fixed; a stronger detector graph can replace this one if it keeps it):

| output | shape | dtype | meaning |
| --- | --- | --- | --- |
| ``boxes`` | (B, K, 4) | float32 | x1, y1, x2, y2 normalised to [0, 1] |
| ``scores`` | (B, K) | float32 | centre-heatmap peak score in [0, 1], descending |
| ``tags`` | (B, K) | int64 | object class id (index into the model's tag list) |
| ``attributes`` | (B, K) | int64 | attribute (colour) id |
| ``features`` | (B, K, D) | float32 | region feature vector (zero where not valid) |
| ``valid`` | (B, K) | bool | score above the threshold |

Input: ``images`` (B, 3, H, W) float32 RGB in [0, 1], H = W = ``config.image_size``.
"""

from cmal.detector.config import DetectorConfig
from cmal.detector.model import Detector, DetectorOutput

__all__ = ["Detector", "DetectorConfig", "DetectorOutput"]
