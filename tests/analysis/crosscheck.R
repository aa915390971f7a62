# Reference results from R survival and cmprsk for the analysis cross-checks.
#
# Usage: Rscript crosscheck.R cohorts.csv landmarks.csv out.json
#   cohorts.csv:   cohort, os_days, os_event, rfs_days, rfs_event, cr_status, group, major,
#                  necrosis, hbv, age   (one row per patient, several cohorts stacked)
#   landmarks.csv: cohort, days    (landmark times; months = days / 30.4375, as in Python)
# Writes one JSON object keyed by cohort id. jsonlite is not needed (not in Debian's r-base).

suppressPackageStartupMessages({
  library(survival)
  library(cmprsk)
})

DAYS_PER_MONTH <- 30.4375
GROUP_LEVELS <- c("combination_chemo", "single_agent_chemo", "y90", "sequential")

num <- function(x) {
  x <- as.numeric(x)
  ifelse(is.finite(x), formatC(x, digits = 17, format = "g"), "null")
}
arr <- function(x) paste0("[", paste(num(x), collapse = ","), "]")
strs <- function(x) paste0("[", paste(sprintf("\"%s\"", x), collapse = ","), "]")
obj <- function(...) {
  fields <- list(...)
  paste0("{", paste(sprintf("\"%s\":%s", names(fields), unlist(fields)), collapse = ","), "}")
}

at_landmarks <- function(fit, times, last) {
  # summary(times = t) drops t beyond the last observation: report NA there, as Python's null.
  rows <- lapply(times, function(t) {
    if (t > last) return(c(NA, NA, NA))
    s <- summary(fit, times = t)
    c(s$surv, s$lower, s$upper)
  })
  do.call(rbind, rows)
}

RMEAN_MONTHS <- 60  # AnalysisConfig.rmst_months

km_block <- function(t, e, landmarks) {
  fit <- survfit(Surv(t, e) ~ 1, conf.type = "log-log")
  q <- quantile(fit, 0.5)
  rm <- summary(fit, rmean = RMEAN_MONTHS)$table
  follow <- quantile(survfit(Surv(t, 1 - e) ~ 1), 0.5, conf.int = FALSE)
  ticks <- seq(0, max(t), by = 12)
  lm <- at_landmarks(fit, landmarks, max(t))
  obj(
    surv = arr(lm[, 1]), lower = arr(lm[, 2]), upper = arr(lm[, 3]),
    median = num(q$quantile), median_lower = num(q$lower), median_upper = num(q$upper),
    followup = num(follow),
    censored_median = num(if (any(e == 0)) median(t[e == 0]) else NA),
    n_risk = arr(summary(fit, times = ticks, extend = TRUE)$n.risk),
    events = num(sum(e)),
    rmean = num(rm["rmean"]), rmean_se = num(rm["se(rmean)"])
  )
}

logrank_block <- function(t, e, group) {
  # Groups with nobody at risk at any event time make survdiff's variance singular: left out.
  if (sum(e) == 0) return("null")
  at_risk <- group %in% unique(group[t >= min(t[e == 1])])
  t <- t[at_risk]
  e <- e[at_risk]
  group <- group[at_risk]
  if (length(unique(group)) < 2) return("null")
  g <- factor(group, levels = intersect(GROUP_LEVELS, unique(group)))
  test <- tryCatch(survdiff(Surv(t, e) ~ g), error = function(err) NULL)
  if (is.null(test)) return("null")
  df <- length(levels(g)) - 1
  obj(
    groups = strs(levels(g)), chisq = num(test$chisq), df = num(df),
    p = num(pchisq(test$chisq, df, lower.tail = FALSE)),
    observed = arr(test$obs), expected = arr(test$exp)
  )
}

cox_block <- function(formula, data) {
  warned <- FALSE
  fit <- tryCatch(
    withCallingHandlers(
      coxph(formula, data = data, ties = "efron"),
      warning = function(w) {
        warned <<- TRUE
        invokeRestart("muffleWarning")
      }
    ),
    error = function(err) NULL
  )
  if (is.null(fit)) return("null")
  obj(
    terms = strs(names(coef(fit))), coef = arr(coef(fit)), se = arr(sqrt(diag(vcov(fit)))),
    loglik = arr(fit$loglik),
    warned = if (warned) "true" else "false"
  )
}

cuminc_block <- function(t, status, landmarks) {
  # cuminc stops with an error when nobody had an event: then no cause has an estimate.
  fit <- if (any(status != 0)) cuminc(t, status, cencode = 0) else NULL
  points <- if (is.null(fit)) NULL else timepoints(fit, sort(unique(landmarks)))
  cause <- function(k) {
    row <- paste("1", k)
    if (is.null(points) || !(row %in% rownames(points$est))) return("null")
    obj(est = arr(points$est[row, ]), var = arr(points$var[row, ]))
  }
  naive <- survfit(Surv(t, status == 1) ~ 1)
  obj(
    cause1 = cause(1), cause2 = cause(2),
    naive_surv = arr(at_landmarks(naive, landmarks, max(t))[, 1])
  )
}

gray_block <- function(t, status, group, cause) {
  # Groups with nobody at risk at the cause's first event time carry no information: left out
  # (as in Python). Other events than the cause are the competing ones.
  if (!any(status == cause)) return("null")
  at_risk <- group %in% unique(group[t >= min(t[status == cause])])
  if (length(unique(group[at_risk])) < 2) return("null")
  coded <- ifelse(status == cause, 1, ifelse(status == 0, 0, 2))[at_risk]
  # cuminc stops (NaN in its variance) when a group's last patient has the competing event.
  fit <- tryCatch(cuminc(t[at_risk], coded, group[at_risk], cencode = 0), error = function(e) NULL)
  if (is.null(fit)) return("\"error\"")
  obj(
    groups = strs(intersect(GROUP_LEVELS, unique(group[at_risk]))),
    stat = num(fit$Tests["1", "stat"]), p = num(fit$Tests["1", "pv"]),
    df = num(fit$Tests["1", "df"])
  )
}

crr_block <- function(t, status, covariates) {
  if (!any(status == 1)) return("null")
  fit <- tryCatch(
    suppressWarnings(crr(t, status, covariates, failcode = 1, cencode = 0)),
    error = function(err) NULL
  )
  if (is.null(fit)) return("null")
  obj(
    coef = arr(fit$coef), se = arr(sqrt(diag(fit$var))),
    converged = if (isTRUE(fit$converged)) "true" else "false"
  )
}

stratified_block <- function(t, e, group, strata) {
  if (sum(e) == 0) return("null")
  g <- factor(group, levels = intersect(GROUP_LEVELS, unique(group)))
  test <- tryCatch(survdiff(Surv(t, e) ~ g + strata(strata)), error = function(err) NULL)
  if (is.null(test)) return("null")
  obj(
    groups = strs(levels(g)), chisq = num(test$chisq),
    observed = arr(rowSums(as.matrix(test$obs))), expected = arr(rowSums(as.matrix(test$exp)))
  )
}

cohort_block <- function(d, landmarks) {
  d$os_t <- d$os_days / DAYS_PER_MONTH
  d$rfs_t <- d$rfs_days / DAYS_PER_MONTH
  d$treatment_group <- factor(d$group, levels = intersect(GROUP_LEVELS, unique(d$group)))
  obj(
    os = km_block(d$os_t, d$os_event, landmarks),
    rfs = km_block(d$rfs_t, d$rfs_event, landmarks),
    logrank = logrank_block(d$os_t, d$os_event, d$group),
    cox = cox_block(Surv(os_t, os_event) ~ major + necrosis + age, d),
    cox_group = cox_block(Surv(os_t, os_event) ~ treatment_group, d),
    cuminc = cuminc_block(d$rfs_t, d$cr_status, landmarks),
    gray = gray_block(d$rfs_t, d$cr_status, d$group, 1),
    gray_death = gray_block(d$rfs_t, d$cr_status, d$group, 2),
    crr = crr_block(d$rfs_t, d$cr_status, cbind(d$major, d$necrosis)),
    stratified = stratified_block(d$os_t, d$os_event, d$group, d$hbv)
  )
}

args <- commandArgs(trailingOnly = TRUE)
cohorts <- read.csv(args[1], stringsAsFactors = FALSE)
landmark_days <- read.csv(args[2], stringsAsFactors = FALSE)
ids <- unique(cohorts$cohort)
blocks <- vapply(ids, function(id) {
  landmarks <- sort(landmark_days$days[landmark_days$cohort == id] / DAYS_PER_MONTH)
  cohort_block(cohorts[cohorts$cohort == id, ], landmarks)
}, character(1))
meta <- obj(
  r = sprintf("\"%s\"", R.version.string),
  survival = sprintf("\"%s\"", as.character(packageVersion("survival"))),
  cmprsk = sprintf("\"%s\"", as.character(packageVersion("cmprsk")))
)
body <- paste(sprintf("\"%s\":%s", ids, blocks), collapse = ",")
writeLines(paste0("{\"versions\":", meta, ",\"cohorts\":{", body, "}}"), args[3])
