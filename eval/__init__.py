"""AUC / UAUC / WUAUC, segments and the A/B simulator (a later issue). Numpy only."""
