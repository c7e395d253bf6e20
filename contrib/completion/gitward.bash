# bash completion for gitward
_gitward()
{
	local cur prev words cword
	_init_completion || return
	local commands="reconcile agent validate status diff suspend resume restart history rollback down schema version"
	local common="--repo --ref --path --state-dir --run-dir --log-dir --node --label --no-prune --allow-empty --allow-rewind --log-format --log-level --container-socket --ca-file --insecure-skip-tls-verify --known-hosts --ssh-key --git-username --git-password-file --git-timeout --git-connect-timeout --git-deadline --verify-signatures --allowed-signers --gpg-keyring --move-to-repo --age-identity --plugin-dir --exclude --window --mode --auto-revert --healthy-deadline --fleet-lock --fleet-lock-group --config --help"
	if [[ $cword -eq 1 ]]; then
		COMPREPLY=($(compgen -W "$commands" -- "$cur"))
		return
	fi
	case $prev in
	--output) COMPREPLY=($(compgen -W "text json markdown github" -- "$cur")); return ;;
	--log-format) COMPREPLY=($(compgen -W "text json" -- "$cur")); return ;;
	--commit-status) COMPREPLY=($(compgen -W "github gitlab gitea" -- "$cur")); return ;;
	--mode) COMPREPLY=($(compgen -W "enforce observe" -- "$cur")); return ;;
	--log-level) COMPREPLY=($(compgen -W "debug info warn error" -- "$cur")); return ;;
	--state-dir|--run-dir|--log-dir) _filedir -d; return ;;
	--path|--config|--webhook-secret-file|--container-socket|--repo|--ca-file|--known-hosts|--ssh-key|--git-password-file|--allowed-signers|--gpg-keyring|--age-identity|--plugin-dir|--notify-secret-file|--notify-exec|--forge-token-file|--nodes|--against) _filedir; return ;;
	esac
	case ${words[1]} in
	reconcile) COMPREPLY=($(compgen -W "$common --dry-run --output --against" -- "$cur")) ;;
	agent) COMPREPLY=($(compgen -W "$common --interval --splay --listen --webhook-secret-file --stuck-after --header-timeout --notify --notify-secret-file --notify-repeat --notify-exec --commit-status --forge-api --forge-repo --forge-token-file --alertmanager" -- "$cur")) ;;
	diff) COMPREPLY=($(compgen -W "$common --base --head --nodes --output" -- "$cur")) ;;
	validate) [[ $cur == -* ]] && COMPREPLY=($(compgen -W "--output --exclude --verbose --help" -- "$cur")) || _filedir ;;
	status) COMPREPLY=($(compgen -W "--output --state-dir --help" -- "$cur")) ;;
	suspend) COMPREPLY=($(compgen -W "--reason --state-dir --help" -- "$cur")) ;;
	resume) COMPREPLY=($(compgen -W "--state-dir --help" -- "$cur")) ;;
	restart) COMPREPLY=($(compgen -W "--state-dir --help" -- "$cur")) ;;
	history) COMPREPLY=($(compgen -W "--output --state-dir --help" -- "$cur")) ;;
	rollback) COMPREPLY=($(compgen -W "--clear --reason --state-dir --help" -- "$cur")) ;;
	down) COMPREPLY=($(compgen -W "--state-dir --run-dir --log-dir --container-socket --plugin-dir --log-format --log-level --config --help" -- "$cur")) ;;
	esac
}
complete -F _gitward gitward
