"""Forensic casework: evidence discovery, chat exports, the case store, the scan and its custody record."""
