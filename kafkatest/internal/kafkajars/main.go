// Command kafkajars prints the directory holding the Kafka jars that
// kafkatest runs, resolving them with Maven into the shared cache first if
// needed (see kafkatest.JarsDir). scripts/kafka-image.sh uses it to put the
// very same jars into the local Kafka image:
//
//	go run ./kafkatest/internal/kafkajars
//
// Progress goes to stderr; stdout holds only the directory.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"

	"github.com/gostream/gostream/kafkatest"
)

func main() {
	log.SetFlags(0)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	dir, err := kafkatest.JarsDir(ctx, log.Printf)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(dir)
}
