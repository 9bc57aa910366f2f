"""AUC / UAUC / WUAUC, two-model comparisons, segments, the A/B simulator and their reports. Never imports
torch or TensorFlow."""
