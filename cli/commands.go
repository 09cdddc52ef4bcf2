package cli

import "github.com/spf13/cobra"

// commands lists the subcommands; each lives in its own file.
func commands() []*cobra.Command {
	return []*cobra.Command{newSubmitCmd(), newProduceCmd(), newConsumeCmd(), newTopicsCmd(), newWorkerCmd(), newClusterCmd(), newJobsCmd(), newKafkaCmd()}
}
