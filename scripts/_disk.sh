# Sourced by the set-up scripts: refuse an install that cannot fit on the disk before pip starts
# (a full disk half-way through leaves a broken venv and pip's "[Errno 28] No space left on
# device" after minutes of downloads), and warn when it may not fit.
#   check_disk DIR WHAT NEED_GB PEAK_GB
# NEED_GB: what the installed venv takes; PEAK_GB: with pip's downloads and unpacking on top.
check_disk() {
  local dir=$1 what=$2 need=$3 peak=$4 free_kb free_gb
  free_kb=$(df -Pk "$dir" | awk 'NR == 2 {print $4}')
  free_gb=$(awk -v k="$free_kb" 'BEGIN {printf "%.1f", k / 1048576}')
  if awk -v f="$free_gb" -v n="$need" 'BEGIN {exit !(f < n)}'; then
    echo "error: $what needs about $need GB on the disk of $dir (about $peak GB while pip" \
         "downloads and unpacks), but only $free_gb GB are free there ($(df -P "$dir" |
         awk 'NR == 2 {print $6}')). Free some space (old clones, venvs, runs/) and run this" \
         "again." >&2
    exit 1
  fi
  if awk -v f="$free_gb" -v p="$peak" 'BEGIN {exit !(f < p)}'; then
    echo "warning: $free_gb GB free on the disk of $dir; $what may need about $peak GB while" \
         "pip downloads and unpacks." >&2
  fi
}
