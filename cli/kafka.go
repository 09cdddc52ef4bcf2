package cli

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/gostream/gostream/kafkasrc"
	"github.com/spf13/cobra"
)

func newKafkaCmd() *cobra.Command {
	var listen, topic string
	var partitions int32
	cmd := &cobra.Command{
		Use:   "kafka",
		Short: "Run an in-memory Kafka-protocol broker for trying gostream on one machine (not for production)",
		Long: `Run the embedded broker of the zero-setup quickstart (franz-go's kfake) on
--listen with --topic created, until Ctrl-C or SIGTERM. It keeps its data in
memory only and loses it when it stops: it is for trying gostream (the
cluster walkthrough, produce, consume) on one machine, not for production,
where gostream reads a real Apache Kafka cluster (--brokers).`,
		Example: `  gostream kafka &                      # 127.0.0.1:9092, topic logs with 3 partitions
  gostream produce --brokers 127.0.0.1:9092 --topic logs examples/wordcount/sample.log`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			b, err := kafkasrc.StartEmbeddedOn(ctx, listen, topic, partitions)
			if errors.Is(err, syscall.EADDRINUSE) {
				return fmt.Errorf("--listen %s is in use (another Kafka?): pick a free address with --listen, or use that Kafka with --brokers", listen)
			}
			if err != nil {
				return err
			}
			defer b.Close()
			fmt.Fprintf(cmd.OutOrStdout(), "in-memory Kafka (for trying gostream, not for production) on %s, topic %s with %d partitions; Ctrl-C stops it\n",
				strings.Join(b.Addrs(), ","), topic, partitions)
			<-ctx.Done()
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&listen, "listen", "127.0.0.1:9092", "host:port to serve Kafka on, also the address given to clients")
	fl.StringVar(&topic, "topic", "logs", "topic to create")
	fl.Int32Var(&partitions, "partitions", 3, "partitions of --topic")
	return cmd
}
