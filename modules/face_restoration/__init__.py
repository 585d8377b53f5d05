"""Face restoration (A1111's "Restore faces"): RetinaFace finds the faces, each is aligned to a 512 px
crop, GFPGAN or CodeFormer (built by spandrel from the user's file) restores it, and it is pasted back.
See service.FaceRestorers for the folders and settings."""
