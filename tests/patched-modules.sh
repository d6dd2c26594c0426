#!/usr/bin/env bash
# The dependencies kept with patches of ours (PATCHED_MODS in the Makefile)
# are their upstream version plus the patch files in MODULE/patches, applied
# in order (git format-patch files, one per change; see each module's
# README.md). This script checks that, and regenerates the patch files from
# the tree.
#
#   patched-modules.sh check MODULE...
#       Downloads the upstream version that go.mod requires (go mod
#       download: the module proxy), applies the patches with git am and
#       compares the result with the tree, byte for byte. Fails, listing the
#       differing files, when the tree was edited without its patch or a
#       patch without the tree.
#   patched-modules.sh refresh MODULE NNNN
#       Folds the tree's edits (what check reports) into patch NNNN and
#       writes every patch file again.
#   patched-modules.sh add MODULE SUBJECT [MESSAGE-FILE]
#       Makes the tree's edits a new patch at the end of the series.
#
# Left out of the comparison: the module's README.md (ours, not
# upstream's), its patches/ folder, and upstream's dotfiles at the top
# (.github, .build.yml, .gitignore: its CI and git settings).
set -euo pipefail

die() { echo "patched-modules: $*" >&2; exit 1; }

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# The temporary repositories must not depend on the user's git settings
# (diff.noprefix, format.signature... change the patch files).
author_name=$(git config user.name 2>/dev/null || echo "MailFountain maintainers")
author_email=$(git config user.email 2>/dev/null || echo "maintainers@mailfountain.dev")
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
export GIT_COMMITTER_NAME=$author_name GIT_COMMITTER_EMAIL=$author_email
export GIT_AUTHOR_NAME=$author_name GIT_AUTHOR_EMAIL=$author_email

tmp=$(mktemp -d)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT

# upstream MODULE: prints the upstream module's path and version, as the
# root go.mod requires it, and checks that the module's README names them.
upstream() {
	local mod=$1 path version
	[[ -f $mod/go.mod ]] || die "$mod: no go.mod"
	path=$(awk '$1 == "module" { print $2; exit }' "$mod/go.mod")
	version=$(go list -m -f '{{.Version}}' "$path") || die "$mod: $path is not required by go.mod"
	grep -qF "$path $version" "$mod/README.md" ||
		die "$mod/README.md does not say it is $path $version (the version go.mod requires)"
	echo "$path" "$version"
}

# build MODULE DIR: DIR becomes a git repository holding upstream's
# version of MODULE (commit "upstream"), then one commit per patch.
build() {
	local mod=$1 dir=$2 up path version src
	up=$(upstream "$mod") || exit 1
	read -r path version <<<"$up"
	# Outside any module, so that our go.mod and go.sum are left alone.
	src=$(cd "$tmp" && GOWORK=off GOFLAGS=-mod=mod go mod download -json "$path@$version" |
		sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
	[[ -n $src && -d $src ]] || die "go mod download $path@$version failed"
	cp -R "$src" "$dir"
	chmod -R u+w "$dir"
	git -C "$dir" init -q
	git -C "$dir" add -A
	git -C "$dir" commit -q -m "$path $version"
	git -C "$dir" tag upstream
	local patches=("$root/$mod"/patches/*.patch)
	if [[ -e ${patches[0]} ]] && ! git -C "$dir" am -q --keep-cr "${patches[@]}" >"$tmp/am.log" 2>&1; then
		cat "$tmp/am.log" >&2
		die "$mod: the patches do not apply to $path $version (above: the one that failed)"
	fi
}

# tree MODULE DIR: DIR gets MODULE's files, without ours.
tree() {
	cp -R "$1" "$2"
	rm -rf "$2/README.md" "$2/patches"
}

# compare MODULE: upstream plus the patches against the tree.
compare() {
	local mod=$1 want=$tmp/want/$1 have=$tmp/have/$1
	mkdir -p "$(dirname "$want")" "$(dirname "$have")"
	build "$mod" "$want"
	rm -rf "$want/.git" "$want/README.md" "$want"/.[!.]*
	tree "$mod" "$have"
	if ! diff -r -q "$want" "$have" >"$tmp/diff.log"; then
		echo "patched-modules: $mod is not upstream plus its patches:" >&2
		sed -e "s|^Files $want/\(.*\) and .* differ\$|  $mod/\1: differs|" \
			-e "s|^Only in $have\(.*\): \(.*\)\$|  $mod\1/\2: only in the tree|" \
			-e "s|^Only in $want\(.*\): \(.*\)\$|  $mod\1/\2: only in upstream plus the patches|" \
			"$tmp/diff.log" >&2
		echo "the differences (want: upstream plus the patches; have: the tree), first lines:" >&2
		(cd "$tmp" && diff -r -u "want/$mod" "have/$mod" | head -n 40) >&2 || true
		echo "an edit of the tree goes into a patch: make patches-refresh MOD=$mod PATCH=NNNN (see $mod/README.md)" >&2
		return 1
	fi
	echo "$mod: upstream $(upstream "$mod" | tr ' ' @) plus $(ls "$mod"/patches/*.patch 2>/dev/null | wc -l) patches, as in the tree"
}

# regenerate MODULE DIR: writes DIR's commits after "upstream" as MODULE's
# patch files, in place of the old ones.
regenerate() {
	local mod=$1 dir=$2
	rm -f "$mod"/patches/*.patch
	mkdir -p "$mod/patches"
	git -C "$dir" format-patch -q --zero-commit --no-signature --no-numbered \
		-o "$root/$mod/patches" upstream..HEAD
	git -C "$dir" log --reverse --format='  %s' upstream..HEAD
}

# edits MODULE DIR: commits nothing; stages in DIR the tree's difference
# from upstream plus the patches, and fails when there is none.
edits() {
	local mod=$1 dir=$2 f
	build "$mod" "$dir"
	# Every file but upstream's dotfiles and README.md is replaced by the
	# tree's.
	git -C "$dir" ls-files -z | while IFS= read -r -d '' f; do
		case $f in .* | README.md) ;; *) rm -f "$dir/$f" ;; esac
	done
	tree "$mod" "$tmp/edited"
	cp -R "$tmp/edited/." "$dir/"
	git -C "$dir" add -A
	if git -C "$dir" diff --cached --quiet; then
		die "$mod: the tree is upstream plus its patches already: nothing to fold"
	fi
	git -C "$dir" diff --cached --stat
}

cmd=${1:-}
shift || true
case $cmd in
check)
	(($#)) || die "usage: $0 check MODULE..."
	failed=0
	for mod in "$@"; do
		compare "${mod%/}" || failed=1
	done
	exit $failed
	;;
refresh)
	(($# == 2)) || die "usage: $0 refresh MODULE NNNN (the number of the patch that the tree's edits belong to)"
	mod=${1%/} n=$2
	target=("$mod"/patches/"$n"-*.patch)
	[[ -e ${target[0]} ]] || die "$mod: no patch $n (patches/$n-*.patch)"
	dir=$tmp/repo
	edits "$mod" "$dir"
	# The patch's commit is the Nth after upstream.
	commit=$(git -C "$dir" rev-list --reverse upstream..HEAD | sed -n "$((10#$n))p")
	[[ -n $commit ]] || die "$mod: no commit for patch $n"
	git -C "$dir" commit -q --fixup="$commit"
	if ! GIT_SEQUENCE_EDITOR=: git -C "$dir" rebase -q -i --autosquash upstream >"$tmp/rebase.log" 2>&1; then
		cat "$tmp/rebase.log" >&2
		die "$mod: the edits do not go into patch $n without touching a later patch's lines; nothing written"
	fi
	regenerate "$mod" "$dir"
	compare "$mod"
	;;
add)
	(($# == 2 || $# == 3)) || die "usage: $0 add MODULE SUBJECT [MESSAGE-FILE]"
	mod=${1%/}
	dir=$tmp/repo
	edits "$mod" "$dir"
	if (($# == 3)); then
		{ echo "$2"; echo; cat "$3"; } | git -C "$dir" commit -q -F -
	else
		git -C "$dir" commit -q -m "$2"
	fi
	regenerate "$mod" "$dir"
	compare "$mod"
	;;
*)
	die "usage: $0 check MODULE... | refresh MODULE NNNN | add MODULE SUBJECT [MESSAGE-FILE]"
	;;
esac
