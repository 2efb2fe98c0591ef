"""Converters from published detectors' released files to faketrace weights (issue 20).

One module per publisher's file layout; each exposes `convert(files, **options) -> Converted`
and an `ACCEPTED` sentence naming the formats it reads. configs/published/NAME.yaml names the
converter of each registry entry; `faketrace.engine.import_weights` runs it and writes the
checkpoint. docs/zoo.md lists what is verified and how.
"""
