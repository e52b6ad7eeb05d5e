"""Claimed drops on disk, shared by the intake that claims them, the sender that files them away and the
operator's commands: claim ids (`claims`) and parking in failed/ with an explanation (`parking`)."""
