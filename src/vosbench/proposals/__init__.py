"""Object proposals for STG-Net: per frame, boxes, full-frame masks and detection scores."""
