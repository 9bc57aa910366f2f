"""The ground every library stands on: errors, files and atomic publishing, hashing, child processes,
progress, config loading, formatting, framework process settings. No framework, no library, no app."""
