"""Models: the timm backbone factory, the Detector base class, and tensor-level export."""
