"""Message formats: the SBD, arkivmelding, ASiC-E and CMS containers, pure and streaming."""
