"""What a person sees: the command line, the HTML report, the movie player, the run summary and
exports. Thin: parsing, progress, printing and templates over the API; no science lives here."""
