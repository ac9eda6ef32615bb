import json
import boto3
print('Loading function')
def lambda_handler(event, context):
    # The event object contains records from the DynamoDB stream
    for record in event['Records']:
        print(f"Processing record: {record['eventID']}")
        # Get the stream record type (INSERT, MODIFY, REMOVE)
        event_name = record['eventName']
        # Get the new image of the item
        new_image = record.get('dynamodb', {}).get('NewImage')
        if new_image:
            product_id = new_image.get('productId', {}).get('S')
            product_name = new_image.get('name', {}).get('S')
            price = new_image.get('price', {}).get('N') # Note: 'N' is a Number type in DynamoDB JSON
            print(f"Event: {event_name}, Product ID: {product_id}, Name: {product_name}, Price: {price}")
            # Here you would add your logic, e.g., send a notification
            if event_name == 'INSERT':
                print(f"New product added: {product_name}")
            elif event_name == 'MODIFY':
                print(f"Product updated: {product_name}")
            elif event_name == 'REMOVE':
                print(f"Product removed: {product_id}")
        else:
            print("No NewImage found in record.")
    return {
        'statusCode': 200,
        'body': json.dumps('Successfully processed events!')
    }
