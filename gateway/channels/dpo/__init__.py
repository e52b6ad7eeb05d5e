"""DPO: messages between integration points over the Altinn 3 Broker (an sbd.zip per message)."""
