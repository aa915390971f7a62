# Table 1 reference: R's fisher.test, kruskal.test, and the SMDs written out from Yang and
# Dalton (2012) and the pooled-SD formula, averaged over pairs of groups (R tableone's rule).
# Usage: Rscript tableone.R cohorts.csv out.json
#   cohorts.csv: cohort, group, sex, hbv, extent, necrosis, age, afp (afp may be NA)
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1], stringsAsFactors = FALSE)
num <- function(x) ifelse(is.finite(x), formatC(x, digits = 17, format = "g"), "null")

categorical_smd <- function(a, b) {
  p <- a / sum(a); q <- b / sum(b)
  k <- length(p)
  diff <- (p - q)[-1]; pk <- p[-1]; qk <- q[-1]
  s <- -(outer(pk, pk) + outer(qk, qk)) / 2
  diag(s) <- (pk * (1 - pk) + qk * (1 - qk)) / 2
  sqrt(max(drop(t(diff) %*% MASS_ginv(s) %*% diff), 0))
}
MASS_ginv <- function(m) {  # Moore-Penrose inverse through the SVD (MASS is not needed)
  s <- svd(m); keep <- s$d > max(dim(m)) * max(s$d) * .Machine$double.eps
  s$v[, keep, drop = FALSE] %*% (t(s$u[, keep, drop = FALSE]) / s$d[keep])
}
mean_pairs <- function(groups, f) {
  values <- c()
  for (i in seq_along(groups)) for (j in seq_along(groups)) if (i < j) values <- c(values, f(groups[[i]], groups[[j]]))
  values <- values[is.finite(values)]
  if (length(values)) mean(values) else NA
}
continuous_smd <- function(a, b) abs(mean(a) - mean(b)) / sqrt((var(a) + var(b)) / 2)

row <- function(x, group, kind) {
  if (kind == "categorical") {
    tab <- table(factor(x), factor(group))
    tab <- tab[rowSums(tab) > 0, colSums(tab) > 0, drop = FALSE]
    p <- fisher.test(tab, workspace = 2e7)$p.value
    cols <- lapply(seq_len(ncol(tab)), function(j) as.numeric(tab[, j]))
    smd <- mean_pairs(cols, categorical_smd)
  } else {
    keep <- !is.na(x)
    p <- kruskal.test(x[keep], factor(group[keep]))$p.value
    v <- if (kind == "log") log10(x) else x
    split_v <- split(v[keep], group[keep])
    smd <- mean_pairs(split_v, continuous_smd)
  }
  sprintf("{\"p\":%s,\"smd\":%s}", num(p), num(smd))
}
blocks <- c()
for (id in unique(d$cohort)) {
  x <- d[d$cohort == id, ]
  fields <- c(
    sprintf("\"sex\":%s", row(x$sex, x$group, "categorical")),
    sprintf("\"hbv_status\":%s", row(x$hbv, x$group, "categorical")),
    sprintf("\"resection_extent\":%s", row(x$extent, x$group, "categorical")),
    sprintf("\"complete_necrosis\":%s", row(x$necrosis, x$group, "categorical")),
    sprintf("\"age_at_surgery\":%s", row(x$age, x$group, "continuous")),
    sprintf("\"afp_pre_surgery\":%s", row(x$afp, x$group, "log"))
  )
  blocks <- c(blocks, sprintf("\"%s\":{%s}", id, paste(fields, collapse = ",")))
}
writeLines(paste0("{", paste(blocks, collapse = ","), "}"), args[2])
