"""DPV: the receiver's Altinn mailbox, with a notification (varsel), over the Altinn 3 Correspondence API."""
