SELECT cnt, pnd, pln, act, cpl, kll, ent, drp, pkd, prc, res, rej, orp, err
FROM fetchq.metric_get_common($1)
