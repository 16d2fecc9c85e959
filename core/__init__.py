"""The ground floor every layer shares: errors, records, seam contracts, devices, files, text,
statistics and the seeded RNG tree. It imports nothing of Salon."""
